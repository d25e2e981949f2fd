//! The page cache read paths probed at the kernel functions the page cache tracepoints sit
//! in, for kernels that predate those tracepoints (before Linux 6.10/6.11):
//!
//! - `filemap_read`: read, pread, readv, io_uring reads, and (before 6.5) splice, sendfile
//!   and copy_file_range from a file: where `mm_filemap_get_pages` fires later.
//! - `filemap_splice_read` (6.5 and later): splice and sendfile from a file.
//! - `filemap_fault`, `filemap_map_pages`: mmap reads.
//! - `__iomap_dio_rw`: O_DIRECT reads and writes, where `iomap_dio_rw_begin` fires later.
//!
//! fentry programs get BTF-typed arguments and read them with direct loads, as the page cache
//! programs do; kprobes, for kernels that refuse trampolines, read them with probe reads. Both
//! hand the inode to the same decision as the page cache programs.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};

use crate::{
    files::{
        self,
        page_cache::{inode_read, kiocb_direct_io, written, IOCB_WRITE},
    },
    kernel::{file_inode, load, offset, offsets, read},
};

/// `filemap_read(iocb, iter, already_read)`.
#[fentry(function = "filemap_read")]
pub fn fentry_file_read(ctx: FEntryContext) -> i32 {
    let iocb: *const u8 = ctx.arg(0);
    // SAFETY: the function's BTF-typed `struct kiocb *`.
    typed_file_read(unsafe { load(iocb, offset!(kiocb_ki_filp)) });
    0
}

/// `filemap_splice_read(in, ppos, pipe, len, flags)`.
#[fentry(function = "filemap_splice_read")]
pub fn fentry_splice_read(ctx: FEntryContext) -> i32 {
    typed_file_read(ctx.arg(0));
    0
}

/// `filemap_fault(vmf)`.
#[fentry(function = "filemap_fault")]
pub fn fentry_fault(ctx: FEntryContext) -> i32 {
    typed_fault(ctx.arg(0));
    0
}

/// `filemap_map_pages(vmf, start_pgoff, end_pgoff)`.
#[fentry(function = "filemap_map_pages")]
pub fn fentry_map_pages(ctx: FEntryContext) -> i32 {
    typed_fault(ctx.arg(0));
    0
}

/// `__iomap_dio_rw(iocb, iter, ops, dops, dio_flags, private, done_before)`.
#[fentry(function = "__iomap_dio_rw")]
pub fn fentry_direct_io(ctx: FEntryContext) -> i32 {
    kiocb_direct_io(ctx.arg(0));
    0
}

/// `filemap_read(iocb, iter, already_read)`.
#[kprobe(function = "filemap_read")]
pub fn kprobe_file_read(ctx: ProbeContext) -> u32 {
    let _ =
        ctx.arg(0).ok_or(0).and_then(|iocb| files::file_read(read(iocb, offsets().kiocb_ki_filp)?, u32::MAX));
    0
}

/// `filemap_splice_read(in, ppos, pipe, len, flags)`.
#[kprobe(function = "filemap_splice_read")]
pub fn kprobe_splice_read(ctx: ProbeContext) -> u32 {
    let _ = ctx.arg(0).ok_or(0).and_then(|file| files::file_read(file, u32::MAX));
    0
}

/// `filemap_fault(vmf)`.
#[kprobe(function = "filemap_fault")]
pub fn kprobe_fault(ctx: ProbeContext) -> u32 {
    let _ = ctx.arg(0).ok_or(0).and_then(probed_fault);
    0
}

/// `filemap_map_pages(vmf, start_pgoff, end_pgoff)`.
#[kprobe(function = "filemap_map_pages")]
pub fn kprobe_map_pages(ctx: ProbeContext) -> u32 {
    let _ = ctx.arg(0).ok_or(0).and_then(probed_fault);
    0
}

/// `__iomap_dio_rw(iocb, iter, ops, dops, dio_flags, private, done_before)`.
#[kprobe(function = "__iomap_dio_rw")]
pub fn kprobe_direct_io(ctx: ProbeContext) -> u32 {
    let _ = ctx.arg(0).ok_or(0).and_then(probed_direct_io);
    0
}

/// The current process reads BTF-typed `struct file *` `file`.
#[inline(always)]
fn typed_file_read(file: *const u8) {
    // SAFETY: a BTF-typed `struct file *`; a null one reads as zero, which no secret is.
    inode_read(unsafe { load(file, offset!(file_f_inode)) });
}

/// A page fault (or fault-around) on a file mapping: BTF-typed `struct vm_fault *` `vmf`.
#[inline(always)]
fn typed_fault(vmf: *const u8) {
    // SAFETY: a BTF-typed `struct vm_fault *`, read at its and `struct vm_area_struct`'s
    // offsets; `filemap_*` run on file mappings only, so `vm_file` is set.
    let file =
        unsafe { load(load::<*const u8>(vmf, offset!(vm_fault_vma)), offset!(vm_area_struct_vm_file)) };
    typed_file_read(file);
}

/// [`typed_fault`] for a `struct vm_fault *` that is not BTF-typed.
#[inline(always)]
fn probed_fault(vmf: *const u8) -> Result<(), i32> {
    let off = offsets();
    let vma: *const u8 = read(vmf, off.vm_fault_vma)?;
    files::file_read(read(vma, off.vm_area_struct_vm_file)?, u32::MAX)
}

/// [`kiocb_direct_io`] for a `struct kiocb *` that is not BTF-typed.
#[inline(always)]
fn probed_direct_io(iocb: *const u8) -> Result<(), i32> {
    let off = offsets();
    let flags: i32 = read(iocb, off.kiocb_ki_flags)?;
    let inode = file_inode(read(iocb, off.kiocb_ki_filp)?)?;
    if flags & IOCB_WRITE == 0 {
        files::inode_read(inode, u32::MAX)
    } else {
        written(inode)
    }
}
