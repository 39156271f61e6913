using Scout.Kernels;

namespace Scout.Tests.Kernels;

public class WorkerPoolTests
{
    private sealed class CountingJob(int[] hits) : IParallelJob
    {
        public void Execute(int index) => Interlocked.Increment(ref hits[index]);
    }

    [Fact]
    public void EveryIndexRunsExactlyOnceAcrossManyBackToBackJobs()
    {
        using var pool = new WorkerPool(3);
        for (int round = 0; round < 2000; round++)
        {
            int count = 1 + round % 37;
            var hits = new int[count];
            pool.Run(new CountingJob(hits), count);
            Assert.All(hits, h => Assert.Equal(1, h));
        }
    }

    private sealed class OwnerJob(int[] owner) : IParallelJob
    {
        public void Execute(int index) => owner[index] = Environment.CurrentManagedThreadId;
    }

    [Fact]
    public void StaticScheduleRunsEveryIndexOnceInContiguousPerThreadShares()
    {
        using var pool = new WorkerPool(3, PoolSchedule.Static);
        for (int round = 0; round < 200; round++)
        {
            int count = 1 + round % 41;
            var hits = new int[count];
            pool.Run(new CountingJob(hits), count);
            Assert.All(hits, h => Assert.Equal(1, h));
        }
        // Shares are contiguous: thread ids change at most Threads − 1 times along the indices, and the caller runs the first.
        var owner = new int[30];
        pool.Run(new OwnerJob(owner), owner.Length);
        Assert.Equal(Environment.CurrentManagedThreadId, owner[0]);
        int changes = 0;
        for (int i = 1; i < owner.Length; i++) if (owner[i] != owner[i - 1]) changes++;
        Assert.InRange(changes, 0, pool.Threads - 1);
        Assert.Equal(3, owner.Distinct().Count());
    }

    [Fact]
    public void ForAndForRangeCoverTheRangeAfterWorkersWentToSleep()
    {
        using var pool = new WorkerPool(2);
        var seen = new int[1000];
        pool.ForRange(1000, 16, (a, b) => { for (int i = a; i < b; i++) Interlocked.Increment(ref seen[i]); });
        Thread.Sleep(WorkerPool.SpinMicroseconds / 1000 + 50);   // idle long enough for the workers to block
        pool.For(1000, i => Interlocked.Increment(ref seen[i]));
        Assert.All(seen, s => Assert.Equal(2, s));
    }

    [Fact]
    public void ExceptionsPropagateAndThePoolStaysUsable()
    {
        using var pool = new WorkerPool(2);
        var e = Assert.Throws<AggregateException>(() => pool.For(8, i => { if (i == 5) throw new InvalidOperationException("boom"); }));
        Assert.Contains("boom", e.InnerException!.Message);
        int total = 0;
        pool.For(100, i => Interlocked.Add(ref total, i));
        Assert.Equal(4950, total);
    }

    [Fact]
    public void NestedCallsRunInlineInsteadOfDeadlocking()
    {
        using var pool = new WorkerPool(2);
        int total = 0;
        pool.For(4, _ => pool.For(10, j => Interlocked.Add(ref total, j)));
        Assert.Equal(4 * 45, total);
    }
}
