//! Properties of the built `azlin` executable itself.

/// The executable is position-independent (ELF type `ET_DYN`), so the kernel loads its image at
/// a random address (ASLR). It was once linked `-no-pie` to save a millisecond at start-up.
#[test]
fn the_binary_is_position_independent() {
    let path = env!("CARGO_BIN_EXE_azlin");
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "{path} is not an ELF file");
    // e_type: a 16-bit field at offset 16, in the byte order named by EI_DATA (offset 5).
    let field = [bytes[16], bytes[17]];
    let e_type = match bytes[5] {
        1 => u16::from_le_bytes(field),
        _ => u16::from_be_bytes(field),
    };
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    assert_ne!(
        e_type, ET_EXEC,
        "{path} is linked position-dependent (-no-pie)"
    );
    assert_eq!(e_type, ET_DYN, "{path}: unexpected ELF type {e_type}");
}
