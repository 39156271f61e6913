using System.Diagnostics;
using System.Threading.Channels;
using Scout.Model;
using Scout.Tokenization;

namespace Scout.Generation;

/// <summary>Limits and sizes of a <see cref="BatchScheduler"/>.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Sequences decoded together in one batch.</summary>
    public int Parallel { get; init; } = 4;
    /// <summary>Requests waiting for a free slot before new ones are refused.</summary>
    public int QueueLimit { get; init; } = 64;
    /// <summary>Context length of each sequence.</summary>
    public int MaxContext { get; init; } = 4096;
    /// <summary>Prompt tokens per forward while prefilling; decode steps of the other sequences run in between.</summary>
    public int PrefillChunk { get; init; } = 256;
    /// <summary>Memory for caches of finished sequences kept for prefix reuse; 0 turns reuse off.</summary>
    public long PrefixCacheBytes { get; init; } = 1L << 30;
    /// <summary>Element type of the cached keys (f16 unless set: llama.cpp's default).</summary>
    public Planning.KvType KeyType { get; init; } = Planning.KvType.Default;
    /// <summary>Element type of the cached values.</summary>
    public Planning.KvType ValueType { get; init; } = Planning.KvType.Default;
}

/// <summary>Live counters of a <see cref="BatchScheduler"/> (the server's /metrics).</summary>
public sealed class SchedulerMetrics
{
    private long _requests, _rejected, _promptTokens, _cachedPromptTokens, _completionTokens, _steps;
    public long Requests => Interlocked.Read(ref _requests);
    public long Rejected => Interlocked.Read(ref _rejected);
    public long PromptTokens => Interlocked.Read(ref _promptTokens);
    public long CachedPromptTokens => Interlocked.Read(ref _cachedPromptTokens);
    public long CompletionTokens => Interlocked.Read(ref _completionTokens);
    public long DecodeSteps => Interlocked.Read(ref _steps);
    /// <summary>Generated tokens per second over the last decode steps (all sequences together).</summary>
    public double RecentTokensPerSecond { get; internal set; }
    public int Active { get; internal set; }
    public int Queued { get; internal set; }
    public long KvCacheBytes { get; internal set; }

    internal void Request() => Interlocked.Increment(ref _requests);
    internal void Reject() => Interlocked.Increment(ref _rejected);
    internal void Prompt(int tokens, int cached) { Interlocked.Add(ref _promptTokens, tokens); Interlocked.Add(ref _cachedPromptTokens, cached); }
    internal void Completion(int tokens) => Interlocked.Add(ref _completionTokens, tokens);
    internal void Step() => Interlocked.Increment(ref _steps);
}

/// <summary>
/// Continuous batching: one thread runs the model for every active sequence. Each iteration prefills a piece of
/// any newly admitted prompt, then runs ONE batched decode step for all sequences that are generating
/// (<see cref="Llama4Model.ForwardBatch"/>). Requests join between steps and leave when done or cancelled;
/// beyond <see cref="SchedulerOptions.Parallel"/> they wait in a bounded queue, beyond that they are refused.
/// Each request streams through its own unbounded channel, so a slow reader never stalls the batch.
/// </summary>
public sealed class BatchScheduler : IDisposable
{
    private sealed class Job(GenerationRequest request, CancellationToken cancellation)
    {
        public readonly GenerationRequest Request = request;
        public readonly CancellationToken Cancellation = cancellation;
        public readonly Channel<GenerationUpdate> Output = Channel.CreateUnbounded<GenerationUpdate>(new() { SingleWriter = true, SingleReader = true });
        public SequenceRun? Run;
    }

    private readonly Llama4Model _model;
    private readonly ITokenizer _tokenizer;
    private readonly Queue<Job> _queue = new();
    private readonly List<Job> _active = new();
    private readonly object _lock = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private readonly CancellationTokenSource _stop = new();
    private readonly Stopwatch _rateClock = Stopwatch.StartNew();
    private readonly bool _loopStarted;
    private int _rateTokens;
    // One step's working set, reused by every step so that a decode step allocates nothing but what it delivers.
    private readonly List<Job> _stepJobs = new();
    private readonly List<int> _stepTakes = new();
    private readonly List<BatchSegment> _stepSegments = new();
    private float[] _rows = [];
    private float[] _logits = [];

    public SchedulerOptions Options { get; }
    public SchedulerMetrics Metrics { get; } = new();
    public PrefixCache PrefixCache { get; }
    public Llama4Model Model => _model;
    public ITokenizer Tokenizer => _tokenizer;

    public BatchScheduler(Llama4Model model, ITokenizer tokenizer, SchedulerOptions? options = null) : this(model, tokenizer, options, startLoop: true)
    {
    }

    /// <param name="startLoop">false: no thread of its own; the caller steps it with <see cref="Iterate"/> (tests)</param>
    internal BatchScheduler(Llama4Model model, ITokenizer tokenizer, SchedulerOptions? options, bool startLoop)
    {
        Options = options ?? new SchedulerOptions();
        if (Options.Parallel < 1) throw new ArgumentException($"parallel sequences must be at least 1, got {Options.Parallel}");
        if (Options.QueueLimit < 0) throw new ArgumentException($"queue limit must be ≥ 0, got {Options.QueueLimit}");
        _model = model;
        _tokenizer = tokenizer;
        PrefixCache = new PrefixCache(Options.PrefixCacheBytes);
        _thread = new Thread(Loop) { IsBackground = true, Name = "scout-batch" };
        _loopStarted = startLoop;
        if (startLoop) _thread.Start();
    }

    /// <summary>
    /// Queues a request and returns its stream of updates (the last one carries the finish reason). Throws
    /// <see cref="QueueFullException"/> when the queue is full, <see cref="ArgumentException"/> for a bad request.
    /// Cancelling <paramref name="cancellation"/> removes the sequence at the next step and frees its slot.
    /// </summary>
    public IAsyncEnumerable<GenerationUpdate> Submit(GenerationRequest request, CancellationToken cancellation = default)
    {
        request.Validate(_model.Config.VocabSize, Options.MaxContext);
        if (request.Constraint is { } make)
        {
            // Build the output grammar here, on the caller's thread, never on the thread that steps the batch.
            var built = make();
            request = request with { Constraint = () => built };
        }
        var job = new Job(request, cancellation);
        lock (_lock)
        {
            // Capacity is slots + queue, counted over admitted and not-yet-admitted jobs alike: a job stays in the queue
            // until the loop admits it between steps, so testing the two separately would let a burst slip past.
            if (_active.Count + _queue.Count >= Options.Parallel + Options.QueueLimit)
            {
                Metrics.Reject();
                throw new QueueFullException($"the server is busy: {_active.Count} sequences running and {_queue.Count} waiting (limit {Options.QueueLimit})");
            }
            _queue.Enqueue(job);
            Metrics.Request();
            Metrics.Queued = _queue.Count;
        }
        _wake.Release();
        cancellation.Register(() => _wake.Release());
        return job.Output.Reader.ReadAllAsync(cancellation);
    }

    private void Loop()
    {
        while (!_stop.IsCancellationRequested)
        {
            if (Iterate()) continue;
            try { _wake.Wait(_stop.Token); } catch (OperationCanceledException) { break; }
        }
        foreach (var job in _active.ToList()) Fail(job, new OperationCanceledException("the scheduler stopped"));
    }

    /// <summary>One turn of the loop: admits queued requests, drops cancelled ones, runs one step; false when no sequence is active.</summary>
    internal bool Iterate()
    {
        Admit();
        DropCancelled();
        if (_active.Count == 0) return false;
        try
        {
            Step();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A failure in the model fails every sequence in flight rather than killing the loop.
            foreach (var job in _active.ToList()) Fail(job, e);
        }
        UpdateGauges();
        return true;
    }

    /// <summary>
    /// One forward pass for everyone: the next token of every generating sequence, plus pieces of prompts still
    /// being prefilled (up to <see cref="SchedulerOptions.PrefillChunk"/> prompt tokens in all), in one batch.
    /// </summary>
    private void Step()
    {
        try
        {
            StepBatch();
        }
        finally
        {
            // No references to retired jobs or their caches are kept until the next step.
            _stepJobs.Clear();
            _stepTakes.Clear();
            _stepSegments.Clear();
        }
    }

    private void StepBatch()
    {
        int d = _model.Config.HiddenSize, vocab = _model.Config.VocabSize;
        var jobs = _stepJobs;
        var takes = _stepTakes;
        jobs.Clear();
        takes.Clear();
        int rows = 0, prefillBudget = Options.PrefillChunk;
        foreach (var job in _active)
        {
            var run = job.Run!;
            if (run.Finished) continue;
            int take = run.Prefilling ? Math.Min(run.Pending.Length, prefillBudget) : 1;
            if (take == 0) continue;
            if (run.Prefilling) prefillBudget -= take;
            jobs.Add(job);
            takes.Add(take);
            rows += take;
        }
        if (jobs.Count == 0) return;

        // The rows buffer is grown to the largest step and reused; every row a step uses is written by TakeInputs.
        if (_rows.Length < rows * d) _rows = new float[rows * d];
        var h = _rows;
        var segments = _stepSegments;
        segments.Clear();
        int row = 0;
        for (int i = 0; i < jobs.Count; i++)
        {
            try
            {
                segments.Add(jobs[i].Run!.TakeInputs(_model, takes[i], h.AsSpan(row * d, takes[i] * d)));
                row += takes[i];
            }
            catch (Exception e) when (e is ArgumentException or NonFiniteException)
            {
                // A bad input (or a corrupt embedding row) fails its own sequence only.
                Fail(jobs[i], e);
                jobs.RemoveAt(i);
                takes.RemoveAt(i);
                i--;
            }
        }
        if (jobs.Count == 0) return;
        int wanted = 0;
        foreach (var s in segments) if (s.WantLogits) wanted++;
        if (_logits.Length < wanted * vocab) _logits = new float[wanted * vocab];
        var logits = _logits;
        _model.ForwardSegments(h, segments, logits, LogitsMode.Last);
        Metrics.Step();

        int r = 0, generated = 0;
        for (int i = 0; i < jobs.Count; i++)
        {
            if (!segments[i].WantLogits) continue;
            GenerationUpdate update;
            try
            {
                update = jobs[i].Run!.Step(logits.AsSpan(r++ * vocab, vocab));
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or NonFiniteException)
            {
                Fail(jobs[i], e); // e.g. an output grammar with no way forward, or non-finite logits: this sequence only
                continue;
            }
            Deliver(jobs[i], update);
            generated++;
        }
        CountRate(generated);
    }

    private void Admit()
    {
        lock (_lock)
        {
            while (_active.Count < Options.Parallel && _queue.Count > 0)
            {
                var job = _queue.Dequeue();
                if (job.Cancellation.IsCancellationRequested) { job.Output.Writer.TryComplete(new OperationCanceledException(job.Cancellation)); continue; }
                var cache = _model.CreateCache(Options.MaxContext, Options.KeyType, Options.ValueType);
                var cached = job.Request.PromptEmbeddings is null ? PrefixCache.Restore(job.Request.Prompt, cache) : new List<int>();
                job.Run = new SequenceRun(job.Request, _tokenizer, cache, cached);
                Metrics.Prompt(job.Request.Prompt.Length, cached.Count);
                _active.Add(job);
                Metrics.Active = _active.Count;
            }
            Metrics.Queued = _queue.Count;
        }
    }

    private void DropCancelled()
    {
        bool any = false;
        foreach (var job in _active) any |= job.Cancellation.IsCancellationRequested;
        if (!any) return;
        foreach (var job in _active.Where(j => j.Cancellation.IsCancellationRequested).ToList())
            Fail(job, new OperationCanceledException(job.Cancellation));
    }

    private void Deliver(Job job, GenerationUpdate update)
    {
        job.Output.Writer.TryWrite(update);
        if (!update.IsFinal) return;
        Metrics.Completion(update.Stats!.CompletionTokens);
        job.Output.Writer.TryComplete();
        Retire(job);
    }

    private void Fail(Job job, Exception error)
    {
        if (job.Run is { } run) Metrics.Completion(run.Stats().CompletionTokens);
        job.Output.Writer.TryComplete(error);
        Retire(job);
    }

    /// <summary>The slot frees at once; the cache goes to the prefix cache for later prompts that share its start.</summary>
    private void Retire(Job job)
    {
        lock (_lock)
        {
            _active.Remove(job);
            Metrics.Active = _active.Count;
        }
        if (job.Run is not { } run) return;
        if (run.Cache.Length == run.CachedTokens.Count && job.Request.PromptEmbeddings is null)
            PrefixCache.Add(run.CachedTokens, run.Cache); // shared by reference from now on (disposed there when evicted)
        else
            run.Cache.Dispose();
    }

    private void CountRate(int tokens)
    {
        _rateTokens += tokens;
        if (_rateClock.Elapsed.TotalSeconds >= 1)
        {
            Metrics.RecentTokensPerSecond = _rateTokens / _rateClock.Elapsed.TotalSeconds;
            _rateTokens = 0;
            _rateClock.Restart();
        }
    }

    private void UpdateGauges()
    {
        lock (_lock)
        {
            Metrics.Active = _active.Count;
            Metrics.Queued = _queue.Count;
            long kv = 0;
            foreach (var job in _active) kv += job.Run?.Cache.AllocatedBytes ?? 0;
            Metrics.KvCacheBytes = kv + PrefixCache.Bytes;
        }
        if (_active.Count == 0 && _rateClock.Elapsed.TotalSeconds >= 2) Metrics.RecentTokensPerSecond = 0;
    }

    public void Dispose()
    {
        _stop.Cancel();
        _wake.Release();
        if (_loopStarted) _thread.Join(TimeSpan.FromSeconds(10));
        lock (_lock)
            while (_queue.Count > 0) _queue.Dequeue().Output.Writer.TryComplete(new OperationCanceledException("the scheduler stopped"));
    }
}
