using Scout.Kernels;

namespace Scout.Tests;

/// <summary>The worker threads kernel-level tests multiply on (models in tests get their own CPU backend).</summary>
internal static class TestPool
{
    public static WorkerPool Instance { get; } = new(Environment.ProcessorCount);
}
