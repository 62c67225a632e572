//! Tests of the txid index (index.rs).

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// Makes room the way `Records` does: a rebuild from every stored slot.
fn grow(idx: &mut Index, additional: usize, hash: impl Fn(u32) -> u64) {
    if !idx.fits_more(additional) {
        let slots: Vec<u32> = idx.slots().collect();
        *idx = Index::rebuild(
            idx.len() + additional,
            slots.into_iter().map(|s| (hash(s), s)),
        );
    }
}

/// A deliberately poor hash (few home buckets, few tags) so chains,
/// overflow counts and tag collisions are exercised.
fn weak(key: u32) -> u64 {
    let h = u64::from(key % 7);
    h | (h << 56)
}

#[test]
fn matching_finds_exactly_the_slots_with_the_tag() {
    let mut bucket = [0u32; WORDS];
    let tags = [7u8, 0, 255, 7, 1, 128, 7, 0, 0x7f, 0x80, 7, 3];
    for (i, &t) in tags.iter().enumerate() {
        set_tag(&mut bucket, i, t);
    }
    for probe in [0u8, 1, 3, 7, 0x7f, 0x80, 128, 255, 42] {
        let want: Vec<usize> = (0..SLOTS).filter(|&i| tags[i] == probe).collect();
        assert_eq!(
            matching(&bucket, probe).collect::<Vec<_>>(),
            want,
            "tag {probe}"
        );
    }
}

/// Addresses of the buffers `RELEASE` was handed, in order.
static RELEASED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

fn note_release(words: Vec<u32>) {
    RELEASED.lock().unwrap().push(words.as_ptr() as usize);
}

#[test]
fn a_big_index_hands_its_buffer_to_release_and_a_small_one_does_not() {
    release_big_buffers_with(note_release);
    // Other tests may release buffers meanwhile: only entries added
    // after `before` are looked at, and a live buffer's address cannot
    // be released by anyone else until it is dropped.
    let released_since =
        |before: usize, at: usize| RELEASED.lock().unwrap()[before..].contains(&at);
    let big = Index::with_buckets(RELEASE_WORDS / WORDS);
    let (at, before) = (big.words.as_ptr() as usize, RELEASED.lock().unwrap().len());
    drop(big);
    assert!(
        released_since(before, at),
        "a 1 MiB index was dropped in place"
    );
    let small = Index::with_buckets(RELEASE_WORDS / WORDS / 2);
    let (at, before) = (
        small.words.as_ptr() as usize,
        RELEASED.lock().unwrap().len(),
    );
    drop(small);
    assert!(
        !released_since(before, at),
        "a 512 KiB index went to release"
    );
}

#[test]
fn a_big_rebuild_prefetches_and_keeps_every_entry() {
    let hash = |k: u32| u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let n = capacity(BIG) as u32 + 5;
    let idx = Index::rebuild(n as usize, (0..n).map(|k| (hash(k), k)));
    assert!(idx.buckets >= BIG);
    assert_eq!(idx.len(), n as usize);
    idx.check(hash).unwrap();
    assert!((0..n).all(|k| idx.find(hash(k), |s| s == k) == Some(k)));
}

#[test]
fn buckets_are_cache_line_aligned() {
    for n in [1, 2, 64, 1024] {
        let idx = Index::with_buckets(n);
        assert_eq!(idx.bucket(0).as_ptr() as usize % 64, 0);
        assert_eq!(idx.clone().bucket(0).as_ptr() as usize % 64, 0);
    }
}

#[test]
fn grows_and_keeps_every_entry() {
    let mut idx = Index::default();
    let hash = |k: u32| u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for k in 0..10_000u32 {
        grow(&mut idx, 1, hash);
        assert_eq!(idx.insert(hash(k), k, |s| s == k), Insert::Added);
    }
    assert_eq!(idx.len(), 10_000);
    // 10,000 entries at <= 7/8 of 12 per bucket: 1024 buckets of 64 bytes.
    assert_eq!(idx.buckets, 1024);
    for k in 0..10_000u32 {
        assert_eq!(idx.find(hash(k), |s| s == k), Some(k));
    }
    idx.check(hash).unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u32),
    Remove(u32),
    Reserve(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..200u32).prop_map(Op::Insert),
        3 => (0..200u32).prop_map(Op::Remove),
        1 => any::<u8>().prop_map(Op::Reserve),
    ]
}

proptest! {
    /// Against a HashMap: finds, inserts and removes agree and the
    /// overflow counts stay exact, even with a hash that collides a lot.
    #[test]
    fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..400)) {
        let mut idx = Index::default();
        let mut model: HashMap<u32, ()> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k) => {
                    let mut done = idx.insert(weak(k), k, |s| s == k);
                    if done == Insert::Full {
                        grow(&mut idx, 1, weak);
                        done = idx.insert(weak(k), k, |s| s == k);
                    }
                    let present = model.insert(k, ()).is_some();
                    prop_assert_eq!(done, if present { Insert::Found(k) } else { Insert::Added });
                }
                Op::Remove(k) => {
                    prop_assert_eq!(idx.remove(weak(k), k), model.remove(&k).is_some());
                }
                Op::Reserve(n) => {
                    grow(&mut idx, usize::from(n), weak);
                    prop_assert!(idx.fits_more(usize::from(n)));
                }
            }
            prop_assert_eq!(idx.len(), model.len());
            prop_assert!(idx.check(weak).is_ok(), "{:?}", idx.check(weak));
        }
        for k in 0..200u32 {
            prop_assert_eq!(idx.find(weak(k), |s| s == k).is_some(), model.contains_key(&k));
        }
        let copy = idx.clone();
        prop_assert!(copy.check(weak).is_ok());
        prop_assert_eq!(copy.slots().count(), model.len());
    }
}
