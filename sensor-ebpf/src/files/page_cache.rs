//! The steady state's view of file data: page cache tracepoints, in the reader's or
//! writer's context, whatever syscall, descriptor or mapping moved the bytes.
//!
//! - `mm_filemap_get_pages`: read, pread, readv, splice and sendfile from a file,
//!   copy_file_range, io_uring reads: once per call, page cache hit or miss.
//! - `mm_filemap_map_pages`, `mm_filemap_fault`: mmap reads.
//! - `iomap_dio_rw_begin`: O_DIRECT reads and writes, which bypass the page cache.
//! - `writeback_dirty_folio`: a page of a file becomes dirty (write, MAP_SHARED store).
//!
//! `tp_btf` programs with direct loads and an array prefilter: a read of a file that is no
//! secret costs four loads and one array lookup, no helper call.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    channels,
    files::{prefilter, took_in},
    kernel::{inode_generation, inode_id, load, offset, S_IFIFO, S_IFMT},
    taint,
};

/// `IOCB_WRITE` in `kiocb.ki_flags`.
pub const IOCB_WRITE: i32 = 1 << 18;

/// `mm_filemap_get_pages(mapping, index, last_index)`.
#[btf_tracepoint(function = "mm_filemap_get_pages")]
pub fn page_cache_read(ctx: BtfTracePointContext) -> i32 {
    mapping_read(ctx.arg(0));
    0
}

/// `mm_filemap_map_pages(mapping, start, end)`.
#[btf_tracepoint(function = "mm_filemap_map_pages")]
pub fn page_cache_map(ctx: BtfTracePointContext) -> i32 {
    mapping_read(ctx.arg(0));
    0
}

/// `mm_filemap_fault(mapping, index)`.
#[btf_tracepoint(function = "mm_filemap_fault")]
pub fn page_cache_fault(ctx: BtfTracePointContext) -> i32 {
    mapping_read(ctx.arg(0));
    0
}

/// `iomap_dio_rw_begin(iocb, iter, dio_flags, done_before)`.
#[btf_tracepoint(function = "iomap_dio_rw_begin")]
pub fn direct_io(ctx: BtfTracePointContext) -> i32 {
    kiocb_direct_io(ctx.arg(0));
    0
}

/// An O_DIRECT read or write of BTF-typed `struct kiocb *` `iocb`.
#[inline(always)]
pub fn kiocb_direct_io(iocb: *const u8) {
    // SAFETY: a BTF-typed `struct kiocb *`, read at `struct kiocb`'s and `struct file`'s
    // offsets.
    let (flags, inode) = unsafe {
        let file: *const u8 = load(iocb, offset!(kiocb_ki_filp));
        (load::<i32>(iocb, offset!(kiocb_ki_flags)), load::<*const u8>(file, offset!(file_f_inode)))
    };
    if flags & IOCB_WRITE != 0 {
        let _ = written(inode);
    } else {
        inode_read(inode);
    }
}

/// `writeback_dirty_folio(folio, mapping)`.
#[btf_tracepoint(function = "writeback_dirty_folio")]
pub fn page_dirtied(ctx: BtfTracePointContext) -> i32 {
    let mapping: *const u8 = ctx.arg(1);
    if !mapping.is_null() {
        // SAFETY: the tracepoint's `struct address_space *`, not null.
        let _ = written(unsafe { load(mapping, offset!(address_space_host)) });
    }
    0
}

/// `writeback_mark_inode_dirty(inode, flags)`: a write to a named FIFO updates its times and
/// a read its access time, in the writer's and the reader's context (`channels::fifo_touched`).
/// Until anything is tainted or marked it stops at two array reads.
#[btf_tracepoint(function = "writeback_mark_inode_dirty")]
pub fn inode_dirtied(ctx: BtfTracePointContext) -> i32 {
    if !taint::anyone_tainted() && !channels::anything_marked() {
        return 0;
    }
    let inode: *const u8 = ctx.arg(0);
    // SAFETY: the tracepoint's `struct inode *`.
    let mode: u16 = unsafe { load(inode, offset!(inode_i_mode)) };
    if mode & S_IFMT == S_IFIFO {
        let _ = channels::fifo_touched(inode);
    }
    0
}

#[inline(always)]
fn mapping_read(mapping: *const u8) {
    // SAFETY: the tracepoint's `struct address_space *`; `host` is its inode.
    inode_read(unsafe { load(mapping, offset!(address_space_host)) });
}

/// The current process reads data of `inode` (BTF-typed).
#[inline(always)]
pub fn inode_read(inode: *const u8) {
    // SAFETY: a BTF-typed `struct inode *` from the tracepoint's arguments.
    let id = unsafe { inode_id(inode) };
    if prefilter::may_hold(id) {
        let _ = took_in(id, || inode_generation(inode), u32::MAX);
    }
}

/// The current process wrote into `inode`: if it is tainted, the file is derived.
#[inline(always)]
pub fn written(inode: *const u8) -> Result<(), i32> {
    match taint::current() {
        Some(taint) => channels::written_inode(inode, &taint),
        None => Ok(()),
    }
}
