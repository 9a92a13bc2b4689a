//! The CPU path's KV cache in blocks, and the prefix cache that shares them.
//!
//! A sequence's keys and values live in blocks of [`BLOCK`] positions. Full blocks are
//! frozen (immutable, reference-counted), so several sequences can hold the same one: a
//! request whose prompt starts like an earlier one (the same system prompt, a multi-turn
//! history) starts from that one's blocks instead of recomputing them. A block is allocated
//! when a sequence reaches it, so sequences of different lengths waste at most one partial
//! block each, and a finished or abandoned sequence drops its references at once.
//!
//! The [`PrefixCache`] keeps frozen blocks as a tree (each block knows its parent), looked up
//! token for token: whole blocks are shared; where a prompt leaves a block part way, the
//! matching positions are copied into the new sequence's own block. Blocks no sequence holds
//! are evicted least recently used first, within a budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Positions per block.
pub const BLOCK: usize = 16;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The dimensions of a model's cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Shape {
    /// f32 values of one block: per layer and KV head, keys then values, `BLOCK × head_dim`.
    fn block_values(&self) -> usize {
        self.layers * self.kv_heads * 2 * BLOCK * self.head_dim
    }

    /// Bytes of one block.
    pub fn block_bytes(&self) -> usize {
        self.block_values() * 4
    }

    /// Where layer `l`, KV head `g`'s keys (`part` 0) or values (1) start in a block.
    fn at(&self, l: usize, g: usize, part: usize) -> usize {
        ((l * self.kv_heads + g) * 2 + part) * BLOCK * self.head_dim
    }
}

/// The keys and values of up to [`BLOCK`] consecutive positions of a sequence.
pub struct Block {
    id: u64,
    /// The block before this one in its sequence; 0 for a sequence's first.
    parent: u64,
    /// The tokens at these positions.
    tokens: Vec<u32>,
    kv: Vec<f32>,
}

impl Block {
    fn new(shape: &Shape, parent: u64) -> Self {
        Block {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            parent,
            tokens: Vec::with_capacity(BLOCK),
            kv: vec![0.0; shape.block_values()],
        }
    }
}

/// One sequence's cache: frozen blocks (full, maybe shared) then its own open ones.
pub struct CpuCache {
    shape: Shape,
    frozen: Vec<Arc<Block>>,
    /// Blocks still being written: every one full except perhaps the last.
    open: Vec<Block>,
    /// Positions whose keys and values are complete.
    len: usize,
    /// Blocks frozen since [`CpuCache::take_fresh`] last ran: candidates for the prefix cache.
    fresh: Vec<Arc<Block>>,
}

impl CpuCache {
    pub fn new(shape: Shape) -> Self {
        CpuCache {
            shape,
            frozen: Vec::new(),
            open: Vec::new(),
            len: 0,
            fresh: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The id of the sequence's last block (0 before its first).
    fn last_id(&self) -> u64 {
        self.open
            .last()
            .map(|b| b.id)
            .or_else(|| self.frozen.last().map(|b| b.id))
            .unwrap_or(0)
    }

    /// Makes room for `tokens` as the next positions (their keys and values to be written
    /// by [`CpuCache::write`], then made visible by [`CpuCache::commit`]).
    pub(crate) fn extend(&mut self, tokens: &[u32]) {
        for &t in tokens {
            if self.open.last().is_none_or(|b| b.tokens.len() == BLOCK) {
                let b = Block::new(&self.shape, self.last_id());
                self.open.push(b);
            }
            if let Some(b) = self.open.last_mut() {
                b.tokens.push(t);
            }
        }
    }

    /// Position `pos`'s keys and values of layer `l`, each `[kv_heads × head_dim]`.
    /// `pos` is at least `len()` and was made room for by [`CpuCache::extend`].
    pub(crate) fn write(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let s = self.shape;
        let Some(b) = self.open.get_mut(pos / BLOCK - self.frozen.len()) else {
            return;
        };
        let row = (pos % BLOCK) * s.head_dim;
        for g in 0..s.kv_heads {
            let src = g * s.head_dim..(g + 1) * s.head_dim;
            for (part, from) in [(0, k), (1, v)] {
                let at = s.at(l, g, part) + row;
                b.kv[at..at + s.head_dim].copy_from_slice(&from[src.clone()]);
            }
        }
    }

    /// Takes back the room the last [`CpuCache::extend`] of `n` tokens made, before its
    /// [`CpuCache::commit`]: a step that stopped part way leaves the cache as it was.
    pub(crate) fn abandon(&mut self, n: usize) {
        for _ in 0..n {
            let Some(b) = self.open.last_mut() else {
                return;
            };
            b.tokens.pop();
            if b.tokens.is_empty() {
                self.open.pop();
            }
        }
    }

    /// The next `n` positions are written in every layer: count them, and freeze the blocks
    /// they filled.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
        while self.open.first().is_some_and(|b| b.tokens.len() == BLOCK)
            && (self.frozen.len() + 1) * BLOCK <= self.len
        {
            let b = Arc::new(self.open.remove(0));
            self.fresh.push(b.clone());
            self.frozen.push(b);
        }
    }

    /// Layer `l`, KV head `g`: keys and values of positions `from..upto`, block by block
    /// (`[n × head_dim]` each), into `out` (cleared first; reused across calls, since this
    /// runs per token, layer and head).
    pub(crate) fn segments_into<'a>(
        &'a self,
        l: usize,
        g: usize,
        from: usize,
        upto: usize,
        out: &mut Vec<(&'a [f32], &'a [f32])>,
    ) {
        out.clear();
        let s = &self.shape;
        let (k0, v0) = (s.at(l, g, 0), s.at(l, g, 1));
        let blocks = self
            .frozen
            .iter()
            .map(|b| &b.kv[..])
            .chain(self.open.iter().map(|b| &b.kv[..]))
            .enumerate()
            .skip(from / BLOCK);
        for (i, kv) in blocks {
            let first = from.saturating_sub(i * BLOCK);
            let end = upto.saturating_sub(i * BLOCK).min(BLOCK);
            if end <= first {
                break;
            }
            let (a, b) = (first * s.head_dim, end * s.head_dim);
            out.push((&kv[k0 + a..k0 + b], &kv[v0 + a..v0 + b]));
        }
    }

    #[cfg(test)]
    fn segments(&self, l: usize, g: usize, upto: usize) -> Vec<(&[f32], &[f32])> {
        let mut out = Vec::new();
        self.segments_into(l, g, 0, upto, &mut out);
        out
    }

    /// The blocks frozen since the last call.
    pub(crate) fn take_fresh(&mut self) -> Vec<Arc<Block>> {
        std::mem::take(&mut self.fresh)
    }
}

/// Frozen blocks by prefix, for new sequences to start from.
pub struct PrefixCache {
    shape: Shape,
    /// Blocks kept beyond those running sequences hold.
    capacity: usize,
    /// Children by parent id (0: first blocks).
    children: HashMap<u64, Vec<Entry>>,
    count: usize,
    clock: u64,
}

struct Entry {
    block: Arc<Block>,
    used: u64,
}

/// What a prompt found in the [`PrefixCache`].
pub struct Reuse {
    /// A cache holding the prompt's first `positions` positions.
    pub cache: CpuCache,
    pub positions: usize,
}

impl PrefixCache {
    /// A cache keeping up to `bytes` of blocks; 0 turns prefix reuse off.
    pub fn new(shape: Shape, bytes: usize) -> Self {
        PrefixCache {
            shape,
            capacity: bytes / shape.block_bytes(),
            children: HashMap::new(),
            count: 0,
            clock: 0,
        }
    }

    /// Forgets every block kept.
    pub fn clear(&mut self) {
        self.children.clear();
        self.count = 0;
    }

    /// Adds a frozen block (a no-op if the same tokens after the same parent are kept).
    pub fn insert(&mut self, block: Arc<Block>) {
        if self.capacity == 0 {
            return;
        }
        self.clock += 1;
        let siblings = self.children.entry(block.parent).or_default();
        if let Some(e) = siblings.iter_mut().find(|e| e.block.tokens == block.tokens) {
            e.used = self.clock;
            return;
        }
        siblings.push(Entry {
            block,
            used: self.clock,
        });
        self.count += 1;
        self.evict();
    }

    /// A cache for `prompt` starting from the longest prefix kept, leaving at least its
    /// last token to run (its logits pick the first new token). `None` when nothing matches.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<Reuse> {
        let limit = prompt.len().saturating_sub(1);
        self.clock += 1;
        let mut cache = CpuCache::new(self.shape);
        let mut parent = 0;
        let mut pos = 0;
        while let Some(siblings) = self.children.get_mut(&parent) {
            let rest = &prompt[pos..limit];
            // The sibling agreeing longest with the rest of the prompt.
            let best = siblings
                .iter_mut()
                .map(|e| {
                    let n = e
                        .block
                        .tokens
                        .iter()
                        .zip(rest)
                        .take_while(|(a, b)| a == b)
                        .count();
                    (n, e)
                })
                .max_by_key(|(n, _)| *n);
            let Some((n, e)) = best else { break };
            if n == 0 {
                break;
            }
            e.used = self.clock;
            if n == BLOCK {
                parent = e.block.id;
                cache.frozen.push(e.block.clone());
                pos += BLOCK;
                cache.len = pos;
                continue;
            }
            // Part of a block: its first `n` positions, copied into a block of our own.
            let mut own = Block::new(&self.shape, parent);
            own.tokens.extend_from_slice(&e.block.tokens[..n]);
            let s = self.shape;
            for l in 0..s.layers {
                for g in 0..s.kv_heads {
                    for part in 0..2 {
                        let at = s.at(l, g, part);
                        let len = n * s.head_dim;
                        own.kv[at..at + len].copy_from_slice(&e.block.kv[at..at + len]);
                    }
                }
            }
            cache.open.push(own);
            pos += n;
            cache.len = pos;
            break;
        }
        (pos > 0).then_some(Reuse {
            cache,
            positions: pos,
        })
    }

    /// Drops the least recently used blocks no sequence holds until the cache is within its
    /// capacity (blocks in use stay: dropping them would free nothing).
    fn evict(&mut self) {
        while self.count > self.capacity {
            let victim = self
                .children
                .iter()
                .flat_map(|(p, v)| v.iter().enumerate().map(move |(i, e)| (*p, i, e)))
                .filter(|(_, _, e)| Arc::strong_count(&e.block) == 1)
                .min_by_key(|(_, _, e)| e.used)
                .map(|(p, i, _)| (p, i));
            let Some((parent, i)) = victim else { return };
            if let Some(v) = self.children.get_mut(&parent) {
                let gone = v.swap_remove(i);
                if v.is_empty() {
                    self.children.remove(&parent);
                }
                self.count -= 1;
                // Its descendants can no longer be reached by a lookup.
                self.remove_below(gone.block.id);
            }
        }
    }

    fn remove_below(&mut self, id: u64) {
        if let Some(kids) = self.children.remove(&id) {
            self.count -= kids.len();
            for k in kids {
                self.remove_below(k.block.id);
            }
        }
    }

    /// Blocks kept.
    #[cfg(test)]
    fn blocks(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        layers: 2,
        kv_heads: 2,
        head_dim: 4,
    };

    /// A value that says which token, layer, head and part made it.
    fn val(token: u32, l: usize, g: usize, part: usize) -> f32 {
        (token * 1000 + (l * 100 + g * 10 + part) as u32) as f32
    }

    /// Runs `tokens` through `cache` as a forward pass would, writing recognisable values.
    fn feed(cache: &mut CpuCache, tokens: &[u32]) {
        let start = cache.len();
        cache.extend(tokens);
        for l in 0..SHAPE.layers {
            for (i, &t) in tokens.iter().enumerate() {
                let row = |part| -> Vec<f32> {
                    (0..SHAPE.kv_heads)
                        .flat_map(|g| std::iter::repeat_n(val(t, l, g, part), SHAPE.head_dim))
                        .collect()
                };
                cache.write(l, start + i, &row(0), &row(1));
            }
        }
        cache.commit(tokens.len());
    }

    /// The tokens whose values `cache` holds for positions `0..upto`, read back per layer
    /// and head, checked to agree everywhere.
    fn tokens_in(cache: &CpuCache, upto: usize) -> Vec<u32> {
        let mut first: Option<Vec<u32>> = None;
        for l in 0..SHAPE.layers {
            for g in 0..SHAPE.kv_heads {
                let mut seen = Vec::new();
                for (k, v) in cache.segments(l, g, upto) {
                    for (kr, vr) in k
                        .chunks_exact(SHAPE.head_dim)
                        .zip(v.chunks_exact(SHAPE.head_dim))
                    {
                        let t = (kr[0] as u32) / 1000;
                        assert!(kr.iter().all(|&x| x == val(t, l, g, 0)));
                        assert!(vr.iter().all(|&x| x == val(t, l, g, 1)));
                        seen.push(t);
                    }
                }
                match &first {
                    Some(f) => assert_eq!(f, &seen),
                    None => first = Some(seen),
                }
            }
        }
        first.unwrap_or_default()
    }

    /// A finished sequence of `tokens`: its blocks go to `cache`, and it lets go of them.
    fn retire(cache: &mut PrefixCache, tokens: &[u32]) {
        let mut c = CpuCache::new(SHAPE);
        feed(&mut c, tokens);
        let fresh = c.take_fresh();
        drop(c);
        for b in fresh {
            cache.insert(b);
        }
    }

    fn prompt(n: usize, salt: u32) -> Vec<u32> {
        (0..n as u32).map(|i| 1 + i + salt).collect()
    }

    #[test]
    fn a_stopped_step_leaves_the_cache_as_it_was() {
        let mut stopped = CpuCache::new(SHAPE);
        let mut plain = CpuCache::new(SHAPE);
        feed(&mut stopped, &prompt(14, 0));
        feed(&mut plain, &prompt(14, 0));
        // A step of 5 tokens (over a block's end) stopped after its first layer, twice.
        for _ in 0..2 {
            let start = stopped.len();
            stopped.extend(&[900, 901, 902, 903, 904]);
            for i in 0..5 {
                stopped.write(0, start + i, &[9.0; 8], &[9.0; 8]);
            }
            stopped.abandon(5);
        }
        for t in 14..40 {
            feed(&mut stopped, &[t + 1]);
            feed(&mut plain, &[t + 1]);
        }
        assert_eq!(tokens_in(&stopped, 40), tokens_in(&plain, 40));
        let keys = |c: &mut CpuCache| -> Vec<Vec<u32>> {
            c.take_fresh().iter().map(|b| b.tokens.clone()).collect()
        };
        // The blocks offered to the prefix cache are keyed by the tokens really in them.
        assert_eq!(keys(&mut stopped), keys(&mut plain));
        assert_eq!(stopped.open.len(), plain.open.len());
    }

    #[test]
    fn blocks_fill_freeze_and_read_back_in_order() {
        let mut c = CpuCache::new(SHAPE);
        let p = prompt(40, 0);
        feed(&mut c, &p[..21]);
        feed(&mut c, &p[21..]);
        assert_eq!(c.len(), 40);
        assert_eq!(c.frozen.len(), 2);
        assert_eq!(c.take_fresh().len(), 2);
        assert!(c.take_fresh().is_empty());
        assert_eq!(tokens_in(&c, 40), p);
        assert_eq!(tokens_in(&c, 17), p[..17]);
        // A sliding window's range starts inside a block, or at a block's edge.
        for (from, upto) in [(5, 40), (16, 40), (17, 33), (39, 40), (0, 1)] {
            let mut segs = Vec::new();
            c.segments_into(1, 1, from, upto, &mut segs);
            let seen: Vec<u32> = segs
                .iter()
                .flat_map(|(k, _)| k.chunks_exact(SHAPE.head_dim))
                .map(|row| (row[0] as u32) / 1000)
                .collect();
            assert_eq!(seen, p[from..upto], "{from}..{upto}");
        }
    }

    #[test]
    fn a_shared_prefix_is_reused_whole_blocks_and_part_of_the_next() {
        let mut cache = PrefixCache::new(SHAPE, 100 * SHAPE.block_bytes());
        let mut a = CpuCache::new(SHAPE);
        let pa = prompt(50, 0);
        feed(&mut a, &pa);
        for b in a.take_fresh() {
            cache.insert(b);
        }
        assert_eq!(cache.blocks(), 3);

        // Agrees for 37 tokens: two whole blocks shared, 5 positions copied.
        let mut pb = pa[..37].to_vec();
        pb.extend(prompt(10, 500));
        let r = cache.lookup(&pb).expect("a prefix");
        assert_eq!(r.positions, 37);
        assert!(Arc::ptr_eq(&r.cache.frozen[0], &a.frozen[0]));
        assert_eq!(r.cache.open.len(), 1);
        let mut b = r.cache;
        assert_eq!(tokens_in(&b, 37), pb[..37]);
        feed(&mut b, &pb[37..]);
        assert_eq!(tokens_in(&b, pb.len()), pb);

        // The whole prompt kept: its last token is still left to run.
        let r = cache.lookup(&pa[..48]).expect("a prefix");
        assert_eq!(r.positions, 47);
        // Nothing in common.
        assert!(cache.lookup(&prompt(30, 900)).is_none());
        assert!(cache.lookup(&pa[..1]).is_none());
    }

    #[test]
    fn eviction_keeps_the_budget_and_never_drops_blocks_in_use() {
        let mut cache = PrefixCache::new(SHAPE, 4 * SHAPE.block_bytes());
        let mut held = CpuCache::new(SHAPE);
        feed(&mut held, &prompt(64, 0));
        for b in held.take_fresh() {
            cache.insert(b);
        }
        // Four blocks, all held by a running sequence: they stay, so blocks of finished
        // sequences past the budget are the ones to go.
        for salt in [100, 200] {
            retire(&mut cache, &prompt(32, salt));
        }
        assert_eq!(cache.blocks(), 4);
        assert_eq!(cache.lookup(&prompt(65, 0)).map(|r| r.positions), Some(64));
        // Once nothing holds them, the least recently used go first: the newest survive.
        drop(held);
        retire(&mut cache, &prompt(48, 300));
        assert!(cache.blocks() <= 4);
        assert_eq!(
            cache.lookup(&prompt(49, 300)).map(|r| r.positions),
            Some(48)
        );
    }

    #[test]
    fn evicting_a_block_drops_what_hangs_below_it() {
        let mut cache = PrefixCache::new(SHAPE, 3 * SHAPE.block_bytes());
        retire(&mut cache, &prompt(48, 0));
        // Make the first block the least recently used, then overflow by one.
        cache
            .children
            .values_mut()
            .flatten()
            .for_each(|e| e.used += 10);
        if let Some(first) = cache.children.get_mut(&0) {
            first[0].used = 0;
        }
        retire(&mut cache, &prompt(16, 700));
        // The first block went, and with it the two below it.
        assert_eq!(cache.blocks(), 1);
        assert!(cache.lookup(&prompt(40, 0)).is_none());
    }
}
