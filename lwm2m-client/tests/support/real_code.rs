//! Real firmware bytes for the image tests: machine code from the `.text` section of the
//! `lwm2m-client` executable (ELF64, as Linux builds it), so that images, patches and their sizes
//! are those of code rather than of random bytes.

/// The `.text` section of the ELF64 file at `path`.
pub fn text_section(path: &str) -> Vec<u8> {
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "{path} is no little-endian ELF64"
    );
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let section = |i: usize| shoff + i * shentsize;
    let names = u64_at(section(shstrndx) + 24);
    (0..shnum)
        .map(section)
        .find(|&s| elf[names + u32_at(s)..].starts_with(b".text\0"))
        .map(|s| {
            let (off, size) = (u64_at(s + 24), u64_at(s + 32));
            elf[off..off + size].to_vec()
        })
        .unwrap_or_else(|| panic!("{path} has no .text section"))
}

/// `len` bytes of the client executable's code, `skip` bytes into its `.text`.
pub fn code(len: usize, skip: usize) -> Vec<u8> {
    let text = text_section(env!("CARGO_BIN_EXE_lwm2m-client"));
    assert!(
        text.len() >= skip + len,
        ".text is only {} bytes",
        text.len()
    );
    text[skip..skip + len].to_vec()
}

/// A second build of `old`: a new function (other real code, `added` bytes) inserted at a third,
/// so that everything after it moves, as a code change does; the rest is the same code.
pub fn rebuild(old: &[u8], added: usize) -> Vec<u8> {
    let at = old.len() / 3;
    let function = code(added, old.len() * 2);
    let mut new = old[..at].to_vec();
    new.extend_from_slice(&function);
    new.extend_from_slice(&old[at..]);
    new
}
