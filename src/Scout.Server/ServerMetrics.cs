using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Scout.Generation;

namespace Scout.Server;

/// <summary>HTTP-level counters, rendered with the scheduler's counters as Prometheus text.</summary>
internal sealed class ServerMetrics
{
    private readonly ConcurrentDictionary<int, long> _byStatus = new();
    private long _disconnects;

    public void Http(int status) => _byStatus.AddOrUpdate(status, 1, (_, n) => n + 1);
    public void Disconnect() => Interlocked.Increment(ref _disconnects);

    public string Prometheus(ScoutEngine engine)
    {
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
        Metric("scout_tokens_per_second", "gauge", "Tokens generated per second recently (all sequences)", Math.Round(m.RecentTokensPerSecond, 2));
        Metric("scout_active_sequences", "gauge", "Sequences being generated now", m.Active);
        Metric("scout_parallel_sequences", "gauge", "Sequences that can run at once", engine.Scheduler.Options.Parallel);
        Metric("scout_queue_depth", "gauge", "Requests waiting for a slot", m.Queued);
        Metric("scout_queue_limit", "gauge", "Requests that may wait before new ones are refused", engine.Scheduler.Options.QueueLimit);
        Metric("scout_kv_cache_bytes", "gauge", "Bytes of KV cache in use (active sequences and the prefix cache)", m.KvCacheBytes);
        Metric("scout_prefix_cache_entries", "gauge", "Finished sequences kept for prefix reuse", engine.Scheduler.PrefixCache.Count);
        return sb.ToString();
    }
}
