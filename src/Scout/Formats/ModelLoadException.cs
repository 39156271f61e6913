namespace Scout.Formats;

/// <summary>A checkpoint, config or tokenizer could not be read. The message names the file and the problem.</summary>
public class ModelLoadException(string message, Exception? inner = null) : Exception(message, inner);
