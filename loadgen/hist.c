/* Log-linear latency histogram, as HdrHistogram lays it out: values below
 * 64 ns have a bucket each; above, every power of two [2^k, 2^(k+1)) is cut
 * into 64 equal sub-buckets, so a bucket is at most 1/64 (1.6 %) of its
 * values wide.  Fixed size (~30 KB), O(1) record, merge by addition. */
#include "load.h"

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    unsigned shift = msb - HIST_SUB_BITS;
    /* v >> shift is in [64, 128): its low 6 bits pick the sub-bucket */
    return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1));
}

/* The smallest value of bucket i and its width. */
static void bucket_range(unsigned i, uint64_t *lo, uint64_t *width)
{
    if (i < HIST_SUB) {
        *lo = i, *width = 1;
        return;
    }
    unsigned shift = i / HIST_SUB - 1;
    *lo = ((uint64_t)HIST_SUB + (i % HIST_SUB)) << shift;
    *width = (uint64_t)1 << shift;
}

void hist_record(struct hist *h, uint64_t ns)
{
    if (h->count == 0 || ns < h->min_ns) h->min_ns = ns;
    if (ns > h->max_ns) h->max_ns = ns;
    h->count++, h->sum_ns += ns;
    h->b[bucket_of(ns)]++;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    if (from->count == 0) return;
    if (into->count == 0 || from->min_ns < into->min_ns) into->min_ns = from->min_ns;
    if (from->max_ns > into->max_ns) into->max_ns = from->max_ns;
    into->count += from->count, into->sum_ns += from->sum_ns;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) into->b[i] += from->b[i];
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0) return 0;
    /* the rank-th smallest value, rank = ceil(q * count), at least 1 */
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count) rank++;
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t lo, width, mid;
            bucket_range(i, &lo, &width);
            mid = lo + width / 2;
            /* never outside what was seen */
            return mid < h->min_ns ? h->min_ns : mid > h->max_ns ? h->max_ns : mid;
        }
    }
    return h->max_ns;
}
