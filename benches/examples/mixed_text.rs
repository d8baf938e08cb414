//! Writes mixed text for timing `tokenctl scan` on a large input:
//! `cargo run --release -p benches --example mixed_text -- /tmp/mixed.txt 1024` (MiB).
//! Prints how many tokens it planted.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: mixed_text PATH MIB")?;
    let mib: u64 = args.next().ok_or("usage: mixed_text PATH MIB")?.parse()?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let planted = benches::mixed_text::write(&mut out, mib * 1024 * 1024, 1)?;
    std::io::Write::flush(&mut out)?;
    println!("{planted} tokens planted in {mib} MiB at {path}");
    Ok(())
}
