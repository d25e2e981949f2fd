//! Where in a function an entry uprobe goes. The kernel emulates a probed branch (`call`,
//! `jmp`, `jcc`) but single-steps most other instructions out of line, a second trap: on this
//! machine kind that made every probed TLS write of the host 13 µs slower, emulation about
//! 0.3 µs (docs/BENCHMARKS.md). So the probe goes on the function's first branch, past a
//! prologue of instructions that leave the argument registers (`rdi`, `rsi`, `rdx`) alone and
//! cannot jump away; a function whose first instructions are not recognised is probed at its
//! entry (correct, slower).

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// Bytes of a function looked at for its first branch.
const PROLOGUE_BYTES: usize = 48;

/// The offset from `symbol`'s start in the ELF file at `path` where its entry probe goes
/// (0 when the file, the symbol or its first instructions cannot be read).
pub fn offset(path: &Path, symbol: &str) -> u64 {
    let Ok(file) = std::fs::read(path) else { return 0 };
    let Ok(elf) = object::File::parse(&*file) else { return 0 };
    function_start(&elf, &file, symbol).map_or(0, |(_, code)| first_branch(code))
}

/// Where in the ELF image `file` (parsed as `elf`) the entry probe of the function `symbol`
/// goes, as an offset in the file: `None` when it defines no such function.
pub fn file_site(elf: &object::File<'_>, file: &[u8], symbol: &str) -> Option<u64> {
    function_start(elf, file, symbol).map(|(start, code)| start + first_branch(code))
}

/// The file offset and first bytes of the function `name` that `elf` (the image `file`)
/// defines, as a dynamic symbol or, for a library that links another statically, a
/// `.symtab` one.
fn function_start<'a>(elf: &object::File<'_>, file: &'a [u8], name: &str) -> Option<(u64, &'a [u8])> {
    let symbol = elf
        .dynamic_symbols()
        .chain(elf.symbols())
        .find(|s| s.name() == Ok(name) && s.is_definition() && s.kind() == SymbolKind::Text)?;
    let section = elf.section_by_index(symbol.section_index()?).ok()?;
    let (section_offset, _) = section.file_range()?;
    let start = symbol.address().checked_sub(section.address())? + section_offset;
    let at = usize::try_from(start).ok()?;
    Some((start, file.get(at..at.saturating_add(PROLOGUE_BYTES).min(file.len()))?))
}

/// The offset of the first branch in `code`, past recognised straight-line instructions that
/// write no argument register; 0 if something else comes first.
fn first_branch(code: &[u8]) -> u64 {
    let mut at = 0;
    while let Some(rest) = code.get(at..) {
        match rest {
            // call rel32, jmp rel32, jmp rel8, jcc rel8, jcc rel32: emulated.
            [0xe8 | 0xe9 | 0xeb | 0x70..=0x7f, ..] | [0x0f, 0x80..=0x8f, ..] => return at as u64,
            _ => match straight_line_len(rest) {
                Some(len) => at += len,
                None => return 0,
            },
        }
    }
    0
}

/// The length of `code`'s first instruction if it is one a prologue holds that writes none of
/// `rdi`, `rsi`, `rdx`.
fn straight_line_len(code: &[u8]) -> Option<usize> {
    Some(match code {
        // push %rbp, %rbx
        [0x55 | 0x53, ..] => 1,
        // push %r12..%r15; xor %eax,%eax / %ecx,%ecx; test of eax, ecx, edx, esi, edi
        [0x41, 0x54..=0x57, ..] | [0x31, 0xc0 | 0xc9, ..] | [0x85, 0xc0 | 0xc9 | 0xd2 | 0xf6 | 0xff, ..] => 2,
        // mov %rsp,%rbp; xor %r8d,%r8d / %r9d,%r9d
        [0x48, 0x89, 0xe5, ..] | [0x45, 0x31, 0xc0 | 0xc9, ..] => 3,
        // endbr64; sub $imm8,%rsp
        [0xf3, 0x0f, 0x1e, 0xfa, ..] | [0x48, 0x83, 0xec, _, ..] => 4,
        // mov %rax,disp8(%rsp)
        [0x48, 0x89, 0x44, 0x24, _, ..] => 5,
        // sub $imm32,%rsp
        [0x48, 0x81, 0xec, _, _, _, _, ..] => 7,
        // mov %fs:disp32,%rax (the stack canary)
        [0x64, 0x48, 0x8b, 0x04, 0x25, _, _, _, _, ..] => 9,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_3s_ssl_write_is_probed_at_its_first_branch() {
        // sub $0x18,%rsp; mov %fs:0x28,%rax; mov %rax,0x8(%rsp); xor %eax,%eax;
        // test %edx,%edx; js ...
        let code = [
            0x48, 0x83, 0xec, 0x18, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0, 0x48, 0x89, 0x44, 0x24,
            0x08, 0x31, 0xc0, 0x85, 0xd2, 0x78, 0x2f,
        ];
        assert_eq!(first_branch(&code), 0x16);
    }

    #[test]
    fn a_tail_jump_past_argument_setup_of_others_is_the_site() {
        // gnutls_record_send: xor %r8d,%r8d; xor %ecx,%ecx; jmp gnutls_record_send2
        assert_eq!(first_branch(&[0x45, 0x31, 0xc0, 0x31, 0xc9, 0xe9, 0x66, 0x9c, 0xff, 0xff]), 5);
    }

    #[test]
    fn an_instruction_that_may_write_an_argument_keeps_the_probe_at_the_entry() {
        // xor %edx,%edx (the length) before the call.
        assert_eq!(first_branch(&[0x48, 0x83, 0xec, 0x08, 0x31, 0xd2, 0xe8, 0, 0, 0, 0]), 0);
        assert_eq!(first_branch(&[0x48, 0x83, 0xec]), 0, "cut short");
    }
}
