using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Scout.Generation;

namespace Scout.Server;

/// <summary>A Prometheus histogram of seconds: cumulative buckets, sum and count.</summary>
internal sealed class Histogram(params double[] bounds)
{
    private readonly long[] _counts = new long[bounds.Length + 1];
    private double _sum;
    private long _count;
    private readonly Lock _lock = new();

    public void Observe(double seconds)
    {
        lock (_lock)
        {
            int i = 0;
            while (i < bounds.Length && seconds > bounds[i]) i++;
            _counts[i]++;
            _sum += seconds;
            _count++;
        }
    }

    public void Render(StringBuilder sb, string name, string help)
    {
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        sb.Append("# TYPE ").Append(name).Append(" histogram\n");
        lock (_lock)
        {
            long cumulative = 0;
            for (int i = 0; i <= bounds.Length; i++)
            {
                cumulative += _counts[i];
                string le = i < bounds.Length ? bounds[i].ToString(CultureInfo.InvariantCulture) : "+Inf";
                sb.Append(name).Append("_bucket{le=\"").Append(le).Append("\"} ").Append(cumulative).Append('\n');
            }
            sb.Append(name).Append("_sum ").Append(_sum.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
            sb.Append(name).Append("_count ").Append(_count).Append('\n');
        }
    }
}

/// <summary>HTTP-level counters and histograms, rendered with the scheduler's counters as Prometheus text.</summary>
internal sealed class ServerMetrics : IDisposable
{
    private readonly ScoutEngine _engine;
    private readonly ConcurrentDictionary<int, long> _byStatus = new();
    private long _disconnects, _tokens;
    private readonly Histogram _firstToken = new(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60);
    private readonly Histogram _duration = new(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300);
    // (timestamp, completion tokens so far), one sample a second over the rate window.
    private readonly Queue<(long At, long Tokens)> _samples = new();
    private readonly Lock _rateLock = new();
    private readonly Timer _sampler;
    private readonly TimeSpan _rateWindow;

    public ServerMetrics(ScoutEngine engine, TimeSpan rateWindow)
    {
        if (rateWindow <= TimeSpan.Zero) throw new ArgumentException("the token rate window must be positive");
        _engine = engine;
        _rateWindow = rateWindow;
        Sample();
        var tick = rateWindow / 5;
        _sampler = new Timer(_ => Sample(), null, tick, tick);
    }

    public void Http(int status) => _byStatus.AddOrUpdate(status, 1, (_, n) => n + 1);
    public void Disconnect() => Interlocked.Increment(ref _disconnects);
    public void FirstToken(double seconds) => _firstToken.Observe(seconds);
    /// <summary>A token reached a response (counted as it streams, not when its sequence ends).</summary>
    public void Token() => Interlocked.Increment(ref _tokens);
    public void RequestDone(double seconds) => _duration.Observe(seconds);

    private void Sample()
    {
        lock (_rateLock)
        {
            long now = Stopwatch.GetTimestamp();
            _samples.Enqueue((now, Interlocked.Read(ref _tokens)));
            while (_samples.Count > 1 && Stopwatch.GetElapsedTime(_samples.Peek().At, now) > _rateWindow) _samples.Dequeue();
        }
    }

    /// <summary>Tokens generated per second over the last few seconds: 0 once nothing has been generated for that long.</summary>
    public double TokensPerSecond()
    {
        lock (_rateLock)
        {
            var (oldAt, oldTokens) = _samples.Peek();
            long now = Stopwatch.GetTimestamp();
            long tokens = Interlocked.Read(ref _tokens);
            // At least one sampling tick: tokens made just after start (or right after a late tick) still count.
            double seconds = Math.Max(Stopwatch.GetElapsedTime(oldAt, now).TotalSeconds, _rateWindow.TotalSeconds / 5);
            return (tokens - oldTokens) / seconds;
        }
    }

    public string Prometheus()
    {
        var engine = _engine;
        var m = engine.Scheduler.Metrics;
        var sb = new StringBuilder();
        void Metric(string name, string type, string help, double value, string labels = "")
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            sb.Append(name).Append(labels).Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        sb.Append("# HELP scout_http_requests_total HTTP requests answered, by status code\n# TYPE scout_http_requests_total counter\n");
        foreach (var (status, n) in _byStatus.OrderBy(kv => kv.Key))
            sb.Append("scout_http_requests_total{status=\"").Append(status).Append("\"} ").Append(n).Append('\n');
        Metric("scout_http_disconnects_total", "counter", "Clients that went away before their response ended", Interlocked.Read(ref _disconnects));
        Metric("scout_requests_total", "counter", "Generation requests accepted by the scheduler", m.Requests);
        Metric("scout_requests_rejected_total", "counter", "Generation requests refused because the queue was full", m.Rejected);
        Metric("scout_prompt_tokens_total", "counter", "Prompt tokens of accepted requests", m.PromptTokens);
        Metric("scout_prompt_tokens_cached_total", "counter", "Prompt tokens reused from the KV cache instead of recomputed", m.CachedPromptTokens);
        Metric("scout_completion_tokens_total", "counter", "Tokens generated", m.CompletionTokens);
        Metric("scout_decode_steps_total", "counter", "Batched decode steps run", m.DecodeSteps);
        Metric("scout_tokens_per_second", "gauge", $"Tokens generated per second over the last {_rateWindow.TotalSeconds:0.#} s (all sequences; 0 when idle)",
            Math.Round(TokensPerSecond(), 2));
        Metric("scout_active_sequences", "gauge", "Sequences being generated now", m.Active);
        Metric("scout_parallel_sequences", "gauge", "Sequences that can run at once", engine.Scheduler.Options.Parallel);
        Metric("scout_queue_depth", "gauge", "Requests waiting for a slot", m.Queued);
        Metric("scout_queue_limit", "gauge", "Requests that may wait before new ones are refused", engine.Scheduler.Options.QueueLimit);
        Metric("scout_kv_cache_bytes", "gauge", "Bytes of KV cache in use (active sequences and the prefix cache)", m.KvCacheBytes);
        Metric("scout_prefix_cache_entries", "gauge", "Finished sequences kept for prefix reuse", engine.Scheduler.PrefixCache.Count);
        _firstToken.Render(sb, "scout_time_to_first_token_seconds", "Time from a generation request's arrival to its first generated token, per sequence");
        _duration.Render(sb, "scout_request_duration_seconds", "Time from a generation request's arrival to the end of its response");
        return sb.ToString();
    }

    public void Dispose() => _sampler.Dispose();
}
