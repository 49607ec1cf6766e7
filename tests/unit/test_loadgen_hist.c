/* ktlsx-load's latency histogram (loadgen/hist.c): exact below 64 ns, every quantile within the
 * 1/64 bucket width (+ the half-bucket midpoint) of the true value over the whole range, merge by
 * addition, clamped to the seen minimum and maximum, fixed memory whatever the count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../loadgen/hist.c"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The true rank-ceil(q*n) value of sorted v[0..n). */
static uint64_t true_quantile(const uint64_t *v, size_t n, double q)
{
    size_t rank = (size_t)(q * (double)n);
    if ((double)rank < q * (double)n) rank++;
    if (rank < 1) rank = 1;
    return v[rank - 1];
}

static void test_empty(void **state)
{
    (void)state;
    static struct hist h;
    assert_int_equal(hist_quantile(&h, 0.5), 0);
    assert_int_equal(hist_quantile(&h, 0.999), 0);
}

static void test_small_values_exact(void **state)
{
    (void)state;
    static struct hist h;
    memset(&h, 0, sizeof h);
    for (uint64_t v = 1; v <= 63; v++) hist_record(&h, v);
    assert_int_equal(h.count, 63);
    assert_int_equal(hist_quantile(&h, 0.5), 32);  /* rank 32 of 1..63 */
    assert_int_equal(hist_quantile(&h, 1.0), 63);
    assert_int_equal(hist_quantile(&h, 0.0), 1);
    assert_int_equal(h.min_ns, 1);
    assert_int_equal(h.max_ns, 63);
}

static void test_bucket_layout(void **state)
{
    (void)state;
    /* every value falls into a bucket whose range holds it, and buckets are at most 1/64 wide */
    uint64_t probes[] = { 0, 1, 63, 64, 65, 127, 128, 129, 1000, 4095, 4096, 1234567, 999999999ull,
                          (1ull << 40) + 12345, UINT64_MAX / 3, UINT64_MAX };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        unsigned b = bucket_of(probes[i]);
        uint64_t lo, width;
        assert_true(b < HIST_BUCKETS);
        bucket_range(b, &lo, &width);
        assert_true(probes[i] >= lo);
        assert_true(probes[i] - lo < width);
        if (lo >= 64) assert_true(width * 64 <= lo);
    }
}

static void test_quantiles_within_bucket_width(void **state)
{
    (void)state;
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof *v);
    static struct hist h;
    memset(&h, 0, sizeof h);
    assert_non_null(v);
    srand(7);
    for (size_t i = 0; i < N; i++) {
        /* a long-tailed mix: 100 us .. 100 ms, log-uniform-ish */
        uint64_t base = 100000ull << (rand() % 10);
        v[i] = base + (uint64_t)rand() % base;
        hist_record(&h, v[i]);
    }
    qsort(v, N, sizeof *v, cmp_u64);
    const double qs[] = { 0.5, 0.9, 0.99, 0.999, 1.0 };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        uint64_t want = true_quantile(v, N, qs[i]), got = hist_quantile(&h, qs[i]);
        uint64_t diff = got > want ? got - want : want - got;
        assert_true(diff * 64 <= want); /* within one bucket width (1/64) */
    }
    assert_int_equal(h.max_ns, v[N - 1]);
    assert_int_equal(h.min_ns, v[0]);
    free(v);
}

static void test_merge(void **state)
{
    (void)state;
    static struct hist a, b, all;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b), memset(&all, 0, sizeof all);
    for (uint64_t i = 1; i <= 1000; i++) {
        hist_record(i % 2 ? &a : &b, i * 1000);
        hist_record(&all, i * 1000);
    }
    hist_merge(&a, &b);
    assert_int_equal(a.count, all.count);
    assert_int_equal(a.sum_ns, all.sum_ns);
    assert_int_equal(a.min_ns, all.min_ns);
    assert_int_equal(a.max_ns, all.max_ns);
    assert_memory_equal(a.b, all.b, sizeof a.b);
    static struct hist empty;
    hist_merge(&a, &empty); /* an empty one changes nothing */
    assert_int_equal(a.count, all.count);
    assert_int_equal(a.min_ns, all.min_ns);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_bucket_layout),
        cmocka_unit_test(test_quantiles_within_bucket_width),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
