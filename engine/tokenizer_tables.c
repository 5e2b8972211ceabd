/* tokenizer_tables.c: the lookup tables of the tokenizer: string -> id maps
 * (vocab, added tokens), the merge table (id pair -> rank, merged id), and
 * the byte trie that finds added tokens in text, leftmost-longest as HF's
 * Aho-Corasick matcher (MatchKind::LeftmostLongest) does.
 * All are open addressing with power-of-two capacities kept under half full.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

uint64_t tok_hash(const void *p, size_t n) { return XXH3_64bits(p, n); }

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---- string -> int32 ---- */

void tok_strmap_init(tok_strmap *m, size_t expected) {
    m->cap = pow2_at_least(expected * 2 + 1);
    m->n = 0;
    m->key = xcalloc(m->cap, sizeof *m->key);
    m->keylen = xcalloc(m->cap, sizeof *m->keylen);
    m->val = xcalloc(m->cap, sizeof *m->val);
}

void tok_strmap_free(tok_strmap *m) {
    if (m->key)
        for (size_t i = 0; i < m->cap; i++) free(m->key[i]);
    free(m->key);
    free(m->keylen);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static size_t strmap_slot(const tok_strmap *m, const char *key, size_t len) {
    size_t mask = m->cap - 1, i = (size_t)tok_hash(key, len) & mask;
    while (m->key[i] && !(m->keylen[i] == len && memcmp(m->key[i], key, len) == 0))
        i = (i + 1) & mask;
    return i;
}

static void strmap_grow(tok_strmap *m) {
    tok_strmap big;
    big.cap = m->cap * 2;
    big.n = m->n;
    big.key = xcalloc(big.cap, sizeof *big.key);
    big.keylen = xcalloc(big.cap, sizeof *big.keylen);
    big.val = xcalloc(big.cap, sizeof *big.val);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->key[i]) continue;
        size_t j = strmap_slot(&big, m->key[i], m->keylen[i]);
        big.key[j] = m->key[i];
        big.keylen[j] = m->keylen[i];
        big.val[j] = m->val[i];
    }
    free(m->key);
    free(m->keylen);
    free(m->val);
    *m = big;
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
    size_t i = strmap_slot(m, key, len);
    if (m->key[i]) return 0;
    char *k = xmalloc(len + 1);
    memcpy(k, key, len);
    k[len] = '\0';
    m->key[i] = k;
    m->keylen[i] = (uint32_t)len;
    m->val[i] = val;
    m->n++;
    return 1;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t i = strmap_slot(m, key, len);
    return m->key[i] ? m->val[i] : -1;
}

/* ---- (a, b) -> (rank, id) ---- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

void tok_pairmap_init(tok_pairmap *m, size_t expected) {
    m->cap = pow2_at_least(expected * 2 + 1);
    m->n = 0;
    m->key = xmalloc(xmul(m->cap, sizeof *m->key));
    memset(m->key, 0xFF, m->cap * sizeof *m->key);
    m->rank = xcalloc(m->cap, sizeof *m->rank);
    m->id = xcalloc(m->cap, sizeof *m->id);
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->key);
    free(m->rank);
    free(m->id);
    memset(m, 0, sizeof *m);
}

static size_t pair_slot(const tok_pairmap *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)mix64(key) & mask;
    while (m->key[i] != UINT64_MAX && m->key[i] != key) i = (i + 1) & mask;
    return i;
}

/* a later merge of the same pair replaces the earlier one, as HF's HashMap
 * collect does */
void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    if ((m->n + 1) * 2 > m->cap) {
        tok_pairmap big;
        tok_pairmap_init(&big, m->cap);
        for (size_t i = 0; i < m->cap; i++) {
            if (m->key[i] == UINT64_MAX) continue;
            size_t j = pair_slot(&big, m->key[i]);
            big.key[j] = m->key[i];
            big.rank[j] = m->rank[i];
            big.id[j] = m->id[i];
            big.n++;
        }
        tok_pairmap_free(m);
        *m = big;
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = pair_slot(m, key);
    if (m->key[i] == UINT64_MAX) m->n++;
    m->key[i] = key;
    m->rank[i] = rank;
    m->id[i] = id;
}

int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
    if (!m->cap) return 0;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = pair_slot(m, key);
    if (m->key[i] == UINT64_MAX) return 0;
    *rank = m->rank[i];
    *id = m->id[i];
    return 1;
}

/* ---- the added-token trie ---- */

void tok_trie_init(tok_trie *tr) {
    memset(tr, 0, sizeof *tr);
    for (int i = 0; i < 256; i++) tr->root[i] = -1;
    tr->cap = 16;
    tr->first = xmalloc(tr->cap * sizeof *tr->first);
    tr->sibling = xmalloc(tr->cap * sizeof *tr->sibling);
    tr->byte = xmalloc(tr->cap);
    tr->added = xmalloc(tr->cap * sizeof *tr->added);
    tr->n = 1; /* node 0: the root */
    tr->first[0] = tr->sibling[0] = tr->added[0] = -1;
    tr->byte[0] = 0;
}

void tok_trie_free(tok_trie *tr) {
    free(tr->first);
    free(tr->sibling);
    free(tr->byte);
    free(tr->added);
    memset(tr, 0, sizeof *tr);
}

static int32_t trie_child(const tok_trie *tr, int32_t node, uint8_t b) {
    if (node == 0) return tr->root[b];
    for (int32_t c = tr->first[node]; c >= 0; c = tr->sibling[c])
        if (tr->byte[c] == b) return c;
    return -1;
}

static int32_t trie_new_child(tok_trie *tr, int32_t node, uint8_t b) {
    if (tr->n == tr->cap) {
        tr->cap *= 2;
        tr->first = xrealloc(tr->first, tr->cap * sizeof *tr->first);
        tr->sibling = xrealloc(tr->sibling, tr->cap * sizeof *tr->sibling);
        tr->byte = xrealloc(tr->byte, tr->cap);
        tr->added = xrealloc(tr->added, tr->cap * sizeof *tr->added);
    }
    int32_t c = (int32_t)tr->n++;
    tr->first[c] = tr->added[c] = -1;
    tr->byte[c] = b;
    if (node == 0) {
        tr->sibling[c] = -1;
        tr->root[b] = c;
    } else {
        tr->sibling[c] = tr->first[node];
        tr->first[node] = c;
    }
    return c;
}

/* A pattern that is already there keeps its first token: HF's Aho-Corasick
 * reports the first of equal patterns. */
void tok_trie_add(tok_trie *tr, const char *pat, size_t len, int32_t added_index) {
    if (len == 0) return;
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)pat[i];
        int32_t c = trie_child(tr, node, b);
        node = c >= 0 ? c : trie_new_child(tr, node, b);
    }
    if (tr->added[node] < 0) tr->added[node] = added_index;
}

int tok_trie_find(const tok_trie *tr, const uint8_t *s, size_t n, size_t from, size_t *start,
                  size_t *end, int32_t *added) {
    if (tr->n <= 1) return 0;
    for (size_t i = from; i < n; i++) {
        int32_t node = tr->root[s[i]];
        if (node < 0) continue;
        int32_t best = -1;
        size_t best_end = 0, j = i + 1;
        for (;;) {
            if (tr->added[node] >= 0) best = tr->added[node], best_end = j;
            if (j >= n) break;
            node = trie_child(tr, node, s[j]);
            if (node < 0) break;
            j++;
        }
        if (best >= 0) {
            *start = i;
            *end = best_end;
            *added = best;
            return 1;
        }
    }
    return 0;
}
