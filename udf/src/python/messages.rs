//! The framing of the pipes and sockets between the engine and its Python processes
//! (workers, templates; `_read_message`/`_write_message` in `worker.py`): a JSON header
//! (u32 length, little-endian) and a binary body (u64 length), e.g. an Arrow IPC stream.

use std::io::{Read, Write};

use serde_json::Value;

/// Writes one message and flushes it.
pub(crate) fn write_message(
    w: &mut impl Write,
    header: &Value,
    body: &[u8],
) -> std::io::Result<()> {
    let header = serde_json::to_vec(header)?;
    w.write_all(&(header.len() as u32).to_le_bytes())?;
    w.write_all(&header)?;
    w.write_all(&(body.len() as u64).to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Reads one message.
pub(crate) fn read_message(r: &mut impl Read) -> std::io::Result<(Value, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut header)?;
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let mut body = vec![0u8; u64::from_le_bytes(len) as usize];
    r.read_exact(&mut body)?;
    Ok((serde_json::from_slice(&header)?, body))
}
