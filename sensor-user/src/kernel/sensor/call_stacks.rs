//! The stack every program of the object needs, counted as kernels without private stacks
//! count it (Linux before 6.13 for tracing programs, so every distribution kernel Vigie runs on):
//! the frames of a program's deepest chain of BPF-to-BPF calls, each rounded up to 32 bytes (at
//! least 32), must fit in 512 bytes, or the verifier refuses the program ("combined stack size of
//! N calls is M. Too large"). This host's kernel loads such programs, so only the VMs would
//! catch one; this reads the object the agent embeds and catches it at `cargo test`.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex, SymbolKind};

use super::EBPF_OBJECT;

/// `MAX_BPF_STACK`.
const STACK_LIMIT: u32 = 512;
const INSN: u64 = 8;
const BPF_CALL: u8 = 0x85;
const BPF_PSEUDO_CALL: u8 = 1;
const BPF_LD_IMM64: u8 = 0x18;
const BPF_MOV64_X: u8 = 0xbf;
const BPF_ADD64_K: u8 = 0x07;
const FRAME_POINTER: u8 = 10;

/// A function of the object: its own stack and the functions it calls, as (section, first
/// instruction).
#[derive(Debug)]
struct Function {
    name: String,
    section: SectionIndex,
    frame: u32,
    callees: Vec<(SectionIndex, u64)>,
}

/// The functions, by (section, first instruction).
fn functions(elf: &object::File<'_>) -> HashMap<(SectionIndex, u64), Function> {
    let mut found = HashMap::new();
    for symbol in elf.symbols().filter(|s| s.kind() == SymbolKind::Text && s.size() > 0) {
        let Some(section) = symbol.section_index().and_then(|i| elf.section_by_index(i).ok()) else {
            continue;
        };
        let (Ok(data), Ok(name)) = (section.data(), symbol.name()) else { continue };
        let relocations: HashMap<u64, RelocationTarget> =
            section.relocations().map(|(offset, r)| (offset, r.target())).collect();
        let start = symbol.address() / INSN;
        let mut function =
            Function { name: name.to_owned(), section: section.index(), frame: 0, callees: Vec::new() };
        // Registers holding an address in the frame (`rX = r10; rX += -N`), by their offset: a
        // buffer a helper fills is reached only that way. Followed in program order, which is
        // how the compiler sets such an address up, right before its use.
        let mut frame_addresses: HashMap<u8, i64> = HashMap::new();
        let mut pc = start;
        while pc < start + symbol.size() / INSN {
            let at = usize::try_from(pc * INSN).unwrap();
            let insn: [u8; 8] = data[at..at + 8].try_into().unwrap();
            let (code, dst, src) = (insn[0], insn[1] & 0x0f, insn[1] >> 4);
            let off = i16::from_le_bytes([insn[2], insn[3]]);
            let imm = i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
            let class = code & 0x07;
            // LDX reads through src, ST and STX write through dst.
            let base = if class == 0x01 { src } else { dst };
            if matches!(class, 0x01..=0x03) && base == FRAME_POINTER && off < 0 {
                function.frame = function.frame.max(u32::from(off.unsigned_abs()));
            }
            match code {
                BPF_MOV64_X if src == FRAME_POINTER => {
                    frame_addresses.insert(dst, 0);
                }
                BPF_ADD64_K if frame_addresses.contains_key(&dst) => {
                    let offset = frame_addresses[&dst] + i64::from(imm);
                    frame_addresses.insert(dst, offset);
                    if offset < 0 {
                        function.frame = function.frame.max(u32::try_from(-offset).unwrap());
                    }
                }
                // Any other ALU64, ALU or load into dst overwrites the address.
                _ if matches!(class, 0x00 | 0x01 | 0x04 | 0x07) => {
                    frame_addresses.remove(&dst);
                }
                _ => {}
            }
            if code == BPF_CALL && src == BPF_PSEUDO_CALL {
                // A call across sections is relocated against the target's section symbol.
                let (target_section, from) = match relocations.get(&(pc * INSN)) {
                    Some(RelocationTarget::Symbol(index)) => {
                        let target = elf.symbol_by_index(*index).unwrap();
                        (target.section_index().unwrap(), target.address() / INSN)
                    }
                    _ => (section.index(), pc),
                };
                function.callees.push((target_section, from.wrapping_add_signed(i64::from(imm) + 1)));
            }
            pc += if code == BPF_LD_IMM64 { 2 } else { 1 };
        }
        found.insert((section.index(), start), function);
    }
    found
}

/// The deepest chain from `at`, as (combined stack, names along it); `above` is the chain that
/// led here. Panics on a call to no known function and on recursion, which the verifier refuses.
fn deepest(
    functions: &HashMap<(SectionIndex, u64), Function>,
    at: (SectionIndex, u64),
    above: &mut Vec<(SectionIndex, u64)>,
) -> (u32, Vec<String>) {
    let function =
        functions.get(&at).unwrap_or_else(|| panic!("a call to no function: {at:?}, from {above:?}"));
    assert!(!above.contains(&at), "recursion through {}", function.name);
    above.push(at);
    let below =
        function.callees.iter().map(|callee| deepest(functions, *callee, above)).max().unwrap_or_default();
    above.pop();
    let mut names = vec![format!("{} ({} bytes)", function.name, function.frame)];
    names.extend(below.1);
    (function.frame.max(1).next_multiple_of(32) + below.0, names)
}

#[test]
fn every_program_fits_the_stack_of_kernels_without_private_stacks() {
    assert!(!EBPF_OBJECT.is_empty(), "the eBPF object was not built (bpf-linker missing?)");
    let elf = object::File::parse(EBPF_OBJECT).unwrap();
    let text = elf.section_by_name(".text").map(|s| s.index());
    let functions = functions(&elf);
    let programs: Vec<_> = functions.iter().filter(|(_, f)| Some(f.section) != text).collect();
    assert!(programs.len() > 30, "the object's programs were found: {}", programs.len());
    // `sys_enter` calls a subprogram: calls are followed, or every chain would look short.
    let (sys_enter, _) = programs.iter().find(|(_, f)| f.name == "sys_enter").unwrap();
    let (_, chain) = deepest(&functions, **sys_enter, &mut Vec::new());
    assert!(chain.iter().any(|name| name.contains("file_read_subprogram")), "sys_enter's calls: {chain:?}");
    let too_deep: Vec<String> = programs
        .iter()
        .map(|(at, _)| deepest(&functions, **at, &mut Vec::new()))
        .filter(|(stack, _)| *stack > STACK_LIMIT)
        .map(|(stack, chain)| format!("{stack} bytes: {}", chain.join(" -> ")))
        .collect();
    assert!(too_deep.is_empty(), "over {STACK_LIMIT} bytes:\n{}", too_deep.join("\n"));
}
