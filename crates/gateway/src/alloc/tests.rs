//! The cache is driven directly here (this test binary's global allocator is glibc's); the
//! e2e suite runs the whole gateway on it as its global allocator.
use std::sync::mpsc;

use super::*;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Allocates `size` bytes from the cache and fills them with `tag`.
fn take(size: usize, tag: u8) -> *mut u8 {
    // SAFETY: a valid non-zero layout.
    let block = unsafe { ThreadCache.alloc(layout(size)) };
    assert!(!block.is_null());
    // SAFETY: the block holds `size` bytes.
    unsafe { block.write_bytes(tag, size) };
    block
}

/// Checks that `block` still holds `tag` in all its `size` bytes, then frees it.
fn give(block: *mut u8, size: usize, tag: u8) {
    // SAFETY: a live block of `size` bytes from `take`.
    let bytes = unsafe { std::slice::from_raw_parts(block, size) };
    assert!(
        bytes.iter().all(|b| *b == tag),
        "block of {size} bytes overwritten"
    );
    // SAFETY: as above, freed once.
    unsafe { ThreadCache.dealloc(block, layout(size)) };
}

#[test]
fn every_size_has_the_smallest_class_that_holds_it() {
    assert_eq!(class_of(LARGEST), CLASSES - 1);
    assert_eq!(class_size(CLASSES - 1), LARGEST);
    for class in 0..CLASSES {
        assert_eq!(class_size(class) % ALIGN, 0, "class {class}");
        assert_eq!(class_of(class_size(class)), class, "class {class}");
        if class > 0 {
            assert!(class_size(class) > class_size(class - 1));
            // Eight classes per doubling past 256: never more than 1/8 over the size asked.
            assert!(class_size(class) - class_size(class - 1) <= class_size(class - 1) / 8 + 16);
        }
    }
    for size in 1..=LARGEST {
        let class = class_of(size);
        assert!(class < CLASSES, "size {size}");
        assert!(class_size(class) >= size, "size {size}");
        assert!(class == 0 || class_size(class - 1) < size, "size {size}");
    }
}

#[test]
fn a_freed_block_serves_the_next_request_of_its_class_on_a_caching_thread() {
    let _cache = cache_this_thread();
    let first = take(4272, 1);
    give(first, 4272, 1);
    assert_eq!(cached_here(), (1, class_size(class_of(4272))));
    // Another size of the same class gets the same block, whole.
    let again = take(class_size(class_of(4272)), 2);
    assert_eq!(again, first);
    assert_eq!(cached_here(), (0, 0));
    // Another class does not.
    let other = take(64, 3);
    assert_ne!(other, first);
    give(other, 64, 3);
    give(again, class_size(class_of(4272)), 2);
    assert_eq!(cached_here().0, 2);
}

#[test]
fn other_threads_keep_nothing() {
    let block = take(4272, 1);
    give(block, 4272, 1);
    assert_eq!(cached_here(), (0, 0));
}

#[test]
fn the_cache_is_bounded_per_class_and_per_thread() {
    let cache = cache_this_thread();
    let small: Vec<_> = (0..PER_CLASS + 50).map(|_| take(64, 7)).collect();
    for block in small {
        give(block, 64, 7);
    }
    assert_eq!(cached_here(), (PER_CLASS, PER_CLASS * 64));
    let large: Vec<_> = (0..100).map(|_| take(LARGEST, 9)).collect();
    for block in large {
        give(block, LARGEST, 9);
    }
    let (blocks, bytes) = cached_here();
    assert!(bytes <= PER_THREAD_BYTES, "{bytes} bytes kept");
    assert_eq!(
        blocks,
        PER_CLASS + (PER_THREAD_BYTES - PER_CLASS * 64) / LARGEST
    );
    // The guard gives every block back.
    drop(cache);
    assert_eq!(cached_here(), (0, 0));
}

#[test]
fn layouts_past_the_cache_go_to_glibc() {
    let _cache = cache_this_thread();
    for layout in [
        Layout::from_size_align(LARGEST + 1, 8).unwrap(),
        Layout::from_size_align(1 << 20, 8).unwrap(),
        Layout::from_size_align(256, 64).unwrap(),
        Layout::from_size_align(64, 4096).unwrap(),
    ] {
        // SAFETY: valid non-zero layouts; each block is freed once with its layout.
        unsafe {
            let block = ThreadCache.alloc(layout);
            assert!(!block.is_null());
            assert_eq!(block as usize % layout.align(), 0, "{layout:?}");
            block.write_bytes(5, layout.size());
            ThreadCache.dealloc(block, layout);
        }
        assert_eq!(cached_here(), (0, 0), "{layout:?}");
    }
}

#[test]
fn a_reused_block_is_zeroed_when_asked() {
    let _cache = cache_this_thread();
    let block = take(3000, 0xff);
    give(block, 3000, 0xff);
    // SAFETY: a valid layout; the block is freed once.
    unsafe {
        let zeroed = ThreadCache.alloc_zeroed(layout(2900));
        assert_eq!(zeroed, block);
        assert!(std::slice::from_raw_parts(zeroed, 2900)
            .iter()
            .all(|b| *b == 0));
        ThreadCache.dealloc(zeroed, layout(2900));
    }
}

#[test]
fn realloc_keeps_the_contents_through_every_kind_of_size() {
    let _cache = cache_this_thread();
    // Up through the classes and past the cache, then back down.
    let sizes = [
        1, 15, 16, 17, 250, 257, 300, 1000, 1032, 4096, 5000, 16384, 16385, 100_000, 16000, 20,
    ];
    let mut block = take(sizes[0], 0);
    let mut size = sizes[0];
    for (n, &next) in sizes.iter().enumerate().skip(1) {
        // SAFETY: a live block of `size` bytes; `next` is a valid size for its alignment.
        block = unsafe { ThreadCache.realloc(block, layout(size), next) };
        assert!(!block.is_null());
        // SAFETY: the block holds `next` bytes now.
        let bytes = unsafe { std::slice::from_raw_parts_mut(block, next) };
        let kept = size.min(next);
        assert!(
            bytes[..kept].iter().all(|b| usize::from(*b) == n - 1),
            "{size} -> {next}"
        );
        bytes.fill(n as u8);
        size = next;
    }
    give(block, size, (sizes.len() - 1) as u8);
}

#[test]
fn blocks_freed_on_another_thread_serve_that_thread() {
    let (to_b, at_b) = mpsc::channel::<(usize, usize, u8)>();
    let a = std::thread::spawn(move || {
        let _cache = cache_this_thread();
        for n in 0..500usize {
            let size = 1 + (n * 37) % 2048;
            to_b.send((take(size, n as u8) as usize, size, n as u8))
                .unwrap();
        }
    });
    let b = std::thread::spawn(move || {
        let _cache = cache_this_thread();
        let mut freed = Vec::new();
        for (block, size, tag) in at_b {
            give(block as *mut u8, size, tag);
            freed.push((block, size));
        }
        // What this thread kept, it hands out again: each class's last block comes first.
        let (kept, _) = cached_here();
        assert!(kept > 0);
        let &(last, size) = freed.last().unwrap();
        let again = take(size, 1);
        assert_eq!(again as usize, last);
        give(again, size, 1);
    });
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn threads_allocating_and_freeing_at_random_never_share_a_block() {
    // Four caching threads; each allocates blocks of random sizes, tags them, reallocates
    // some, and frees half itself and half on its neighbour. A block handed out twice, or one
    // too small, shows as a tag overwritten.
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..4)
        .map(|_| mpsc::channel::<(usize, usize, u8)>())
        .unzip();
    let threads: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(t, inbox)| {
            let next = senders[(t + 1) % 4].clone();
            std::thread::spawn(move || {
                let _cache = cache_this_thread();
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ t as u64;
                let mut random = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as usize
                };
                let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
                for n in 0..20_000usize {
                    let size = 1 + random() % (LARGEST + LARGEST / 4);
                    let tag = (n % 251) as u8;
                    live.push((take(size, tag), size, tag));
                    if random() % 4 == 0 {
                        let (block, size, tag) = live.swap_remove(random() % live.len());
                        let grown = 1 + random() % (2 * LARGEST);
                        // SAFETY: a live block of `size` bytes; a valid new size.
                        let moved = unsafe { ThreadCache.realloc(block, layout(size), grown) };
                        // SAFETY: the block holds `grown` bytes.
                        let bytes = unsafe { std::slice::from_raw_parts_mut(moved, grown) };
                        assert!(bytes[..size.min(grown)].iter().all(|b| *b == tag));
                        bytes.fill(tag);
                        live.push((moved, grown, tag));
                    }
                    if live.len() > 64 {
                        let (block, size, tag) = live.swap_remove(random() % live.len());
                        if random() % 2 == 0 {
                            give(block, size, tag);
                        } else {
                            next.send((block as usize, size, tag)).unwrap();
                        }
                    }
                    while let Ok((block, size, tag)) = inbox.try_recv() {
                        give(block as *mut u8, size, tag);
                    }
                }
                for (block, size, tag) in live {
                    give(block, size, tag);
                }
                drop(next);
                inbox
            })
        })
        .collect();
    drop(senders);
    let inboxes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // What was still in flight between threads when they stopped.
    for inbox in inboxes {
        for (block, size, tag) in inbox.try_iter() {
            give(block as *mut u8, size, tag);
        }
    }
}
