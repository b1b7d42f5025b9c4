// What a clock read costs on this machine, and how fine each clock is: the numbers behind the
// shard's one CLOCK_MONOTONIC read per loop turn (src/shard/driver.rs, docs/metrics.md "Clock").
// Build and run pinned: cc -O2 -o /tmp/clock_cost bench/clock/clock_cost.c && taskset -c 0 /tmp/clock_cost
#include <stdio.h>
#include <time.h>

static double ns(struct timespec a, struct timespec b) {
    return (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
}

static void measure(const char *name, clockid_t id) {
    enum { N = 20000000 };
    struct timespec res, t0, t1, x;
    clock_getres(id, &res);
    volatile long sink = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        clock_gettime(id, &x);
        sink += x.tv_nsec;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    // Smallest step the clock shows between two reads that differ.
    struct timespec a, b;
    double step = 1e18;
    for (int i = 0; i < 200; i++) {
        clock_gettime(id, &a);
        do { clock_gettime(id, &b); } while (b.tv_sec == a.tv_sec && b.tv_nsec == a.tv_nsec);
        double d = ns(a, b);
        if (d < step) step = d;
    }
    printf("%-24s %6.1f ns/read  resolution %ld ns (clock_getres)  smallest observed step %.0f ns\n",
           name, ns(t0, t1) / N, res.tv_nsec, step);
    (void)sink;
}

int main(void) {
    measure("CLOCK_MONOTONIC", CLOCK_MONOTONIC);
    measure("CLOCK_MONOTONIC_COARSE", CLOCK_MONOTONIC_COARSE);
    return 0;
}
