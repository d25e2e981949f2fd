//! Just enough of a BTF reader to find struct member offsets in the kernel's own type
//! information, without building every type in memory: the kernel's BTF is megabytes, and
//! an idle agent should stay small.
//!
//! Format: <https://docs.kernel.org/bpf/btf.html>.

use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
/// `VOLATILE`, `CONST`, `RESTRICT`, `TYPE_TAG`: kinds that only qualify the type they refer to.
const QUALIFIERS: [u32; 4] = [9, 10, 11, 18];

/// Why a BTF blob could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    /// The blob does not start with a little-endian BTF header.
    #[error("not little-endian BTF (bad magic or header)")]
    BadHeader,
    /// A type or string lies outside the blob.
    #[error("truncated BTF: {0}")]
    Truncated(&'static str),
    /// A type kind this reader does not know how to skip.
    #[error("unknown BTF kind {kind} at type {id}")]
    UnknownKind { kind: u32, id: usize },
}

/// An indexed BTF blob: where each type starts, and the struct and union ids by name.
pub struct Btf {
    data: Vec<u8>,
    strings: usize,
    strings_end: usize,
    /// Byte position of type `id` at index `id - 1`.
    types: Vec<usize>,
    /// Ids of named structs and unions.
    by_name: HashMap<String, Vec<usize>>,
}

impl Btf {
    /// Indexes `data` (the contents of `/sys/kernel/btf/vmlinux`).
    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let header = |at: usize| u32_at(&data, at).ok_or(BtfError::BadHeader);
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::BadHeader);
        }
        let header_len = header(4)? as usize;
        let (type_off, type_len) = (header(8)? as usize, header(12)? as usize);
        let (str_off, str_len) = (header(16)? as usize, header(20)? as usize);
        let types_start = header_len + type_off;
        let types_end = types_start + type_len;
        let strings = header_len + str_off;
        let strings_end = strings + str_len;
        if types_end > data.len() || strings_end > data.len() {
            return Err(BtfError::Truncated("sections"));
        }
        let mut btf = Self { data, strings, strings_end, types: Vec::new(), by_name: HashMap::new() };
        let mut at = types_start;
        while at < types_end {
            btf.types.push(at);
            let id = btf.types.len();
            let (name_off, info) = (btf.u32(at)?, btf.u32(at + 4)?);
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            if (kind == KIND_STRUCT || kind == KIND_UNION) && name_off != 0 {
                btf.by_name.entry(btf.string(name_off)?.to_owned()).or_default().push(id);
            }
            at += 12 + extra_len(kind, vlen).ok_or(BtfError::UnknownKind { kind, id })?;
        }
        Ok(btf)
    }

    /// Byte offset of `member` in the complete struct `structure`, looking into anonymous
    /// structs and unions; `None` if there is no such member.
    pub fn member_offset(&self, structure: &str, member: &str) -> Option<u32> {
        self.by_name
            .get(structure)?
            .iter()
            .find_map(|&id| self.member_bits(id, member, 0))
            .map(|bits| bits / 8)
    }

    fn member_bits(&self, id: usize, member: &str, depth: u32) -> Option<u32> {
        let at = *self.types.get(id.checked_sub(1)?)?;
        let info = self.u32(at + 4).ok()?;
        let kind = (info >> 24) & 0x1f;
        if depth > 8 {
            return None;
        }
        if QUALIFIERS.contains(&kind) {
            // An anonymous `const struct { ... };` member (`vm_fault.vma`): the struct it qualifies.
            return self.member_bits(self.u32(at + 8).ok()? as usize, member, depth + 1);
        }
        if kind != KIND_STRUCT && kind != KIND_UNION {
            return None;
        }
        let bitfield_offsets = info >> 31 == 1;
        (0..(info & 0xffff) as usize).find_map(|i| {
            let m = at + 12 + i * 12;
            let (name_off, type_id, offset) =
                (self.u32(m).ok()?, self.u32(m + 4).ok()?, self.u32(m + 8).ok()?);
            let bits = if bitfield_offsets { offset & 0x00ff_ffff } else { offset };
            match name_off {
                0 => self.member_bits(type_id as usize, member, depth + 1).map(|inner| bits + inner),
                _ => (self.string(name_off).ok()? == member).then_some(bits),
            }
        })
    }

    fn u32(&self, at: usize) -> Result<u32, BtfError> {
        u32_at(&self.data, at).ok_or(BtfError::Truncated("type"))
    }

    fn string(&self, offset: u32) -> Result<&str, BtfError> {
        let start = self.strings + offset as usize;
        let bytes = self.data.get(start..self.strings_end).ok_or(BtfError::Truncated("string"))?;
        let end = bytes.iter().position(|&b| b == 0).ok_or(BtfError::Truncated("string"))?;
        std::str::from_utf8(&bytes[..end]).map_err(|_| BtfError::Truncated("string"))
    }
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Bytes that follow the 12-byte common part of a type of `kind` with `vlen` entries.
fn extra_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
        2 | 7..=12 | 16 | 18 => 0,
        // INT, VAR, DECL_TAG.
        1 | 14 | 17 => 4,
        3 => 12,
        // STRUCT, UNION, DATASEC, ENUM64: 12 bytes per entry; ENUM, FUNC_PROTO: 8.
        4 | 5 | 15 | 19 => 12 * vlen,
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `struct outer { int a; union { int b; long c; }; const struct { int d; }; }`
    /// (anonymous members).
    fn blob() -> Vec<u8> {
        let strings = b"\0outer\0a\0b\0c\0d\0int\0long\0";
        let name = |s: &str| {
            let needle = format!("\0{s}\0");
            u32::try_from(strings.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap() + 1)
                .unwrap()
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend_from_slice(&w.to_le_bytes()));
        push(&[name("int"), 1 << 24, 4, 32]); // 1: int
        push(&[name("long"), 1 << 24, 8, 64]); // 2: long
        push(&[0, (5 << 24) | 2, 8, name("b"), 1, 0, name("c"), 2, 0]); // 3: anonymous union
        push(&[name("outer"), (4 << 24) | 3, 24, name("a"), 1, 0, 0, 3, 64, 0, 6, 128]); // 4: struct outer
        push(&[0, (4 << 24) | 1, 4, name("d"), 1, 0]); // 5: anonymous struct
        push(&[0, 10 << 24, 5]); // 6: const of 5
        let mut data = Vec::new();
        for word in [0x0001_eb9f_u32, 24, 0, u32::try_from(types.len()).unwrap()] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        for word in [u32::try_from(types.len()).unwrap(), u32::try_from(strings.len()).unwrap()] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(strings);
        data
    }

    #[test]
    fn members_are_found_directly_and_inside_anonymous_unions_and_const_structs() {
        let btf = Btf::parse(blob()).unwrap();
        assert_eq!(btf.member_offset("outer", "a"), Some(0));
        assert_eq!(btf.member_offset("outer", "c"), Some(8));
        assert_eq!(btf.member_offset("outer", "d"), Some(16));
        assert_eq!(btf.member_offset("outer", "missing"), None);
        assert_eq!(btf.member_offset("inner", "a"), None);
    }

    #[test]
    fn damaged_blobs_are_errors() {
        assert_eq!(Btf::parse(vec![0; 10]).err(), Some(BtfError::BadHeader));
        let mut short = blob();
        short.truncate(40);
        assert_eq!(Btf::parse(short).err(), Some(BtfError::Truncated("sections")));
    }
}
