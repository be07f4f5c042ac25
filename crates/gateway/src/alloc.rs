//! A per-thread cache of freed heap blocks, in front of the system allocator.
//!
//! A worker serves many connections at once, so the request path allocates in bursts: one
//! readiness pass starts dozens of requests (each with a ~4 KiB future, header maps, buffers)
//! and a later pass frees them all. glibc's per-thread cache holds seven blocks of a size, and
//! none over 1,032 bytes, so most of a burst went to its shared bins (`malloc` and `free`
//! with them: ~11 % of a request's instructions). Proxies keep their own pools for this
//! (HAProxy's per-thread pools, nginx's per-request arenas); this is the smallest such layer:
//!
//! - Sizes up to `LARGEST` with an alignment glibc gives anyway are rounded up to a size
//!   class (16-byte steps to 256, then eight classes per doubling: at most 12.5 % more), on
//!   every thread. So any block with such a layout holds its whole class, wherever it was
//!   allocated.
//! - A thread that opted in ([`cache_this_thread`], the workers) keeps the blocks it frees in a
//!   list per class, up to `PER_CLASS` blocks and `PER_THREAD_BYTES` in all, and hands
//!   them out again before asking glibc. Past the caps, and on every other thread, blocks go
//!   straight back to glibc. The guard of [`cache_this_thread`] returns the thread's blocks
//!   when the thread is done.
//!
//! The free lists are intrusive: a cached block's first word points to the next one.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

/// The largest size served from the cache.
const LARGEST: usize = 16 * 1024;
/// Blocks kept per size class and thread.
const PER_CLASS: usize = 128;
/// Bytes kept in all classes of one thread.
const PER_THREAD_BYTES: usize = 1024 * 1024;
/// The largest alignment served from the cache: glibc's `malloc` gives 16 to every block.
const ALIGN: usize = 16;
/// 16 classes of 16-byte steps up to 256, then 8 per doubling up to `LARGEST`.
const CLASSES: usize = 16 + 8 * 6;

/// The size class of `size` (1..=LARGEST): the smallest class that holds it.
const fn class_of(size: usize) -> usize {
    if size <= 256 {
        size.saturating_sub(1) / 16
    } else {
        // 2^k < size <= 2^(k+1), k >= 8: eight classes of 2^(k-3) bytes each.
        let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
        16 + (k - 8) * 8 + (size - 1 - (1 << k)) / (1 << (k - 3))
    }
}

/// The size of class `class`: every block of the class has this many bytes.
const fn class_size(class: usize) -> usize {
    if class < 16 {
        (class + 1) * 16
    } else {
        let k = (class - 16) / 8 + 8;
        (1 << k) + ((class - 16) % 8 + 1) * (1 << (k - 3))
    }
}

/// Every class's layout, made at compile time: a class that could not be one fails the build.
const LAYOUTS: [Layout; CLASSES] = {
    let mut layouts = [Layout::new::<u8>(); CLASSES];
    let mut class = 0;
    while class < CLASSES {
        layouts[class] = match Layout::from_size_align(class_size(class), ALIGN) {
            Ok(layout) => layout,
            Err(_) => panic!("a class size is a non-zero multiple of the alignment"),
        };
        class += 1;
    }
    layouts
};

/// The class of a layout that the cache serves, or `None` for one it leaves to glibc.
fn cached_class(layout: &Layout) -> Option<usize> {
    (layout.size() <= LARGEST && layout.align() <= ALIGN && layout.size() > 0)
        .then(|| class_of(layout.size()))
}

/// One size class's free list on one thread.
struct Slot {
    head: Cell<*mut u8>,
    /// Blocks the list may still take.
    room: Cell<u32>,
}

/// One thread's free lists. No destructor, so the thread-local needs no registration (which
/// could allocate) and is usable until the thread ends.
struct Lists {
    slots: [Slot; CLASSES],
    /// Bytes the lists may still take: zero on a thread that does not cache.
    budget: Cell<usize>,
}

impl Lists {
    const fn new() -> Self {
        Lists {
            slots: [const {
                Slot {
                    head: Cell::new(ptr::null_mut()),
                    room: Cell::new(PER_CLASS as u32),
                }
            }; CLASSES],
            budget: Cell::new(0),
        }
    }

    fn pop(&self, class: usize) -> Option<*mut u8> {
        let (slot, layout) = (self.slots.get(class)?, LAYOUTS.get(class)?);
        let block = slot.head.get();
        if block.is_null() {
            return None;
        }
        // SAFETY: a non-null head is a block this thread pushed (see `push`): at least 16
        // bytes, 16-aligned, owned by the list, its first word the next block.
        slot.head.set(unsafe { block.cast::<*mut u8>().read() });
        slot.room.set(slot.room.get() + 1);
        self.budget.set(self.budget.get() + layout.size());
        Some(block)
    }

    /// Keeps `block` of `class` if this thread caches and has room; false if the caller must
    /// free it.
    ///
    /// # Safety
    /// `block` is a live block of `class_size(class)` bytes from `System`, 16-aligned, that
    /// the caller gives up.
    unsafe fn push(&self, class: usize, block: *mut u8) -> bool {
        let (Some(slot), Some(layout)) = (self.slots.get(class), LAYOUTS.get(class)) else {
            return false;
        };
        let (room, budget, size) = (slot.room.get(), self.budget.get(), layout.size());
        if room == 0 || budget < size {
            return false;
        }
        // SAFETY: the block is ours now and at least a word long and aligned for one.
        unsafe { block.cast::<*mut u8>().write(slot.head.get()) };
        slot.head.set(block);
        slot.room.set(room - 1);
        self.budget.set(budget - size);
        true
    }

    /// Returns every cached block to glibc, and keeps no more.
    fn drain(&self) {
        for class in 0..CLASSES {
            while let Some(block) = self.pop(class) {
                // SAFETY: a cached block came from `System` with its class's layout and is
                // owned by the list, which just gave it up.
                unsafe { System.dealloc(block, class_layout(class)) };
            }
        }
        self.budget.set(0);
    }
}

thread_local! {
    static LISTS: Lists = const { Lists::new() };
}

/// The layout of `class`, which `class_of` made (always below `CLASSES`).
fn class_layout(class: usize) -> Layout {
    LAYOUTS[class]
}

/// The global allocator: glibc's, with the per-thread cache above in front of it.
pub struct ThreadCache;

// SAFETY: every block handed out is either straight from `System` for the caller's layout, or
// a block of at least the layout's size and alignment (its class's: see `cached_class`) that
// was freed and is owned by exactly one thread's list until handed out again.
unsafe impl GlobalAlloc for ThreadCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = cached_class(&layout) else {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        };
        if let Some(block) = LISTS.try_with(|lists| lists.pop(class)).ok().flatten() {
            return block;
        }
        // SAFETY: a class layout has a non-zero size.
        unsafe { System.alloc(class_layout(class)) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = cached_class(&layout) else {
            // SAFETY: the caller's contract, passed on; such a block came from `System`.
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: a block with a cached class's layout was allocated with the class's size.
        let kept = LISTS.try_with(|lists| unsafe { lists.push(class, block) });
        if kept != Ok(true) {
            // SAFETY: as above: a block of the class's layout from `System`.
            unsafe { System.dealloc(block, class_layout(class)) };
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if cached_class(&layout).is_none() {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: the caller's contract, passed on.
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            // SAFETY: the block holds at least `layout.size()` bytes.
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = cached_class(&layout);
        // SAFETY: the caller guarantees `new_size` with the old alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = cached_class(&new_layout);
        match (old, new) {
            // SAFETY: the caller's contract, passed on; neither size is the cache's.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            // The block already holds the whole class.
            (Some(a), Some(b)) if a == b => block,
            _ => {
                // SAFETY: the caller's contract: a valid new layout, a live old block.
                let grown = unsafe { self.alloc(new_layout) };
                if !grown.is_null() {
                    // SAFETY: both blocks are live, distinct, and hold the bytes copied.
                    unsafe {
                        ptr::copy_nonoverlapping(block, grown, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                grown
            }
        }
    }
}

/// Turns the cache on for this thread until the guard is dropped, which returns the thread's
/// cached blocks to glibc. Once per thread: a second guard would reset the byte budget.
pub fn cache_this_thread() -> CacheGuard {
    let _ = LISTS.try_with(|lists| lists.budget.set(PER_THREAD_BYTES));
    CacheGuard {
        _not_send: std::marker::PhantomData,
    }
}

/// The cache of the thread that made it; see [`cache_this_thread`].
pub struct CacheGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for CacheGuard {
    fn drop(&mut self) {
        let _ = LISTS.try_with(Lists::drain);
    }
}

/// Blocks and bytes this thread holds in its cache.
#[cfg(test)]
fn cached_here() -> (usize, usize) {
    LISTS
        .try_with(|lists| {
            lists
                .slots
                .iter()
                .zip(&LAYOUTS)
                .fold((0, 0), |(blocks, bytes), (slot, layout)| {
                    let kept = PER_CLASS - slot.room.get() as usize;
                    (blocks + kept, bytes + kept * layout.size())
                })
        })
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests;
