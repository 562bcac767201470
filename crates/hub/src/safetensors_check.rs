//! A cheap sanity check of a safetensors file before anyone maps or parses it.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{HubError, Result};

/// The largest header we accept. Real headers are kilobytes to a few megabytes (one JSON
/// entry per tensor); the length prefix is read from an untrusted file, so it is checked
/// against this bound before any buffer is allocated.
pub const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;

/// Checks that `path` is a plausible safetensors file: the 8-byte little-endian header
/// length is at most [`MAX_SAFETENSORS_HEADER`] and fits in the file, the header is a JSON
/// object, and every tensor's `data_offsets` lie inside the data section.
pub fn check_safetensors_header(path: &Path) -> Result<(), HubError> {
    let refuse = |reason: String| HubError::SafetensorsHeader { path: path.to_path_buf(), reason };
    let mut file = File::open(path).map_err(|e| HubError::io("open", path, e))?;
    let file_len = file.metadata().map_err(|e| HubError::io("stat", path, e))?.len();

    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| {
        refuse(format!("only {file_len} bytes, shorter than the 8-byte header length"))
    })?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_SAFETENSORS_HEADER {
        return Err(refuse(format!(
            "header of {header_len} bytes is larger than the {MAX_SAFETENSORS_HEADER}-byte limit"
        )));
    }
    if 8 + header_len > file_len {
        return Err(refuse(format!(
            "header of {header_len} bytes does not fit in the {file_len}-byte file"
        )));
    }

    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| HubError::io("read", path, e))?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| refuse(format!("header is not JSON: {e}")))?;
    let entries = json.as_object().ok_or_else(|| refuse("header is not a JSON object".into()))?;

    let data_len = file_len - 8 - header_len;
    for (name, entry) in entries.iter().filter(|(name, _)| *name != "__metadata__") {
        let offsets = entry
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)));
        match offsets {
            Some((start, end)) if start <= end && end <= data_len => {}
            Some((start, end)) => {
                return Err(refuse(format!(
                    "tensor `{name}` spans bytes {start}..{end} of a {data_len}-byte data section"
                )))
            }
            None => return Err(refuse(format!("tensor `{name}` has no valid data_offsets"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn a_valid_file_passes() {
        let h = r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let f = write(&safetensors(h, &[0; 8]));
        check_safetensors_header(f.path()).unwrap();
    }

    #[test]
    fn a_huge_header_length_is_refused_before_reading() {
        let mut bytes = (u64::MAX / 2).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let f = write(&bytes);
        let err = check_safetensors_header(f.path()).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
    }

    #[test]
    fn truncated_and_out_of_range_files_are_refused() {
        let f = write(&safetensors("{}", &[])[..6]);
        assert!(check_safetensors_header(f.path()).is_err());

        let mut short = safetensors("{}", &[]);
        short[0] = 50;
        let f = write(&short);
        let err = check_safetensors_header(f.path()).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");

        let h = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let f = write(&safetensors(h, &[0; 8]));
        let err = check_safetensors_header(f.path()).unwrap_err().to_string();
        assert!(err.contains("tensor `w`"), "{err}");

        let f = write(&safetensors("[1,2]", &[]));
        assert!(check_safetensors_header(f.path()).is_err());
    }
}
