namespace Scout.Model;

/// <summary>Parameter counts of a loaded checkpoint, from its actual tensors.</summary>
public sealed record ParameterCount(long Total, long ActivePerToken)
{
    /// <summary>Counts every tensor; active = total minus the routed experts a token does not use.</summary>
    public static ParameterCount Of(Checkpoint ckpt)
    {
        var c = ckpt.Config;
        long total = 0, routed = 0;
        foreach (var t in ckpt.Tensors.Values)
        {
            long n = t.ElementCount;
            total += n;
            if (IsRoutedExpert(t.Name)) routed += n;
        }
        long active = c.NumExperts > 0 ? total - routed + routed / c.NumExperts * c.TopK : total;
        return new ParameterCount(total, active);
    }

    public static bool IsRoutedExpert(string name)
        => name.Contains(".experts.") || name.EndsWith("_exps.weight", StringComparison.Ordinal);
}
