//! A small reader for MATLAB v5 `.mat` files, enough for the ImageNet devkit's `meta.mat`:
//! numeric arrays, char arrays, cell arrays and struct arrays, compressed or not,
//! little-endian only.
//!
//! Format facts (MathWorks, "MAT-File Format", level 5): a 128-byte header whose last two
//! bytes read "IM" on a little-endian file; then data elements, each an 8-byte tag (type,
//! byte count) and its data padded to 8 bytes, or a "small" element that packs the count in
//! the upper half of the first tag word and up to 4 data bytes in the second. Type 15
//! (miCOMPRESSED) is a zlib stream holding more elements; type 14 (miMATRIX) holds array
//! flags, dimensions, the name, then class-specific parts.

use std::io::Read;

/// A value read from a `.mat` file.
#[derive(Clone, Debug, PartialEq)]
pub enum MatValue {
    /// Any numeric class, converted to `f64`, column-major.
    Numeric(Vec<f64>),
    /// A char array, as one string (rows concatenated column-major).
    Char(String),
    /// A cell array, column-major.
    Cell(Vec<MatValue>),
    /// A struct array: field names, then for each element its field values in that order.
    Struct {
        /// Field names.
        fields: Vec<String>,
        /// One entry per element, holding one value per field.
        elements: Vec<Vec<MatValue>>,
    },
    /// A class this reader does not interpret (sparse, function handles, objects) or an
    /// empty placeholder.
    Other,
}

impl MatValue {
    /// The first number of a numeric value.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            MatValue::Numeric(v) => v.first().copied(),
            _ => None,
        }
    }

    /// The text of a char value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MatValue::Char(s) => Some(s),
            _ => None,
        }
    }
}

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_CHAR: u8 = 4;

/// Nesting bound: real files nest a few levels; a deeper file is malformed or hostile.
const MAX_DEPTH: usize = 32;
/// Bound on a decompressed element, well above the devkit's few megabytes.
const MAX_INFLATED: u64 = 1 << 30;

/// Reads every top-level variable of a v5 file: `(name, value)` pairs in file order.
pub fn read(bytes: &[u8]) -> Result<Vec<(String, MatValue)>, String> {
    if bytes.len() < 128 {
        return Err(format!("{} bytes, shorter than the 128-byte MAT v5 header", bytes.len()));
    }
    match &bytes[126..128] {
        b"IM" => {}
        b"MI" => return Err("big-endian MAT files are not supported".into()),
        _ => {
            let text = String::from_utf8_lossy(&bytes[..40.min(bytes.len())]);
            return Err(format!("not a MATLAB v5 file (header starts {text:?}); v7.3 (HDF5) files are not read, save with -v7"));
        }
    }
    let mut out = Vec::new();
    read_elements(&bytes[128..], 0, &mut |name, value| out.push((name, value)))?;
    Ok(out)
}

fn read_elements(
    mut data: &[u8],
    depth: usize,
    sink: &mut dyn FnMut(String, MatValue),
) -> Result<(), String> {
    while data.len() >= 8 {
        let (kind, body, rest) = element(data)?;
        data = rest;
        match kind {
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                flate2::read::ZlibDecoder::new(body)
                    .take(MAX_INFLATED)
                    .read_to_end(&mut inflated)
                    .map_err(|e| format!("inflating a compressed element: {e}"))?;
                read_elements(&inflated, depth, sink)?;
            }
            MI_MATRIX => {
                let (name, value) = matrix(body, depth)?;
                sink(name, value);
            }
            other => return Err(format!("unexpected top-level element of type {other}")),
        }
    }
    Ok(())
}

/// Splits one element off `data`: (type, data bytes, the rest after padding).
fn element(data: &[u8]) -> Result<(u32, &[u8], &[u8]), String> {
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
    if data.len() < 8 {
        return Err(format!("truncated element tag ({} bytes left)", data.len()));
    }
    let first = word(0);
    if first >> 16 != 0 {
        // Small element: count in the upper half, data in the next 4 bytes.
        let (kind, count) = (first & 0xffff, (first >> 16) as usize);
        if count > 4 {
            return Err(format!("small element claims {count} bytes, at most 4 fit"));
        }
        return Ok((kind, &data[4..4 + count], &data[8..]));
    }
    let count = word(4) as usize;
    let end = 8usize.checked_add(count).filter(|&e| e <= data.len()).ok_or_else(|| {
        format!("element of type {first} claims {count} bytes, {} remain", data.len() - 8)
    })?;
    // Compressed elements are not padded; everything else is padded to 8 bytes.
    let next = if first == MI_COMPRESSED { end } else { end.div_ceil(8) * 8 };
    Ok((first, &data[8..end], &data[next.min(data.len())..]))
}

fn matrix(body: &[u8], depth: usize) -> Result<(String, MatValue), String> {
    if depth > MAX_DEPTH {
        return Err(format!("arrays nested deeper than {MAX_DEPTH} levels"));
    }
    if body.is_empty() {
        return Ok((String::new(), MatValue::Other));
    }
    let (_, flags, rest) = element(body)?;
    let class = *flags.first().ok_or("array without flags")?;
    let (dim_kind, dims, rest) = element(rest)?;
    let dims: Vec<usize> =
        numbers(dim_kind, dims)?.into_iter().map(|d| d.max(0.0) as usize).collect();
    let count: usize = dims.iter().product();
    let (_, name, mut rest) = element(rest)?;
    let name = String::from_utf8_lossy(name).into_owned();

    let value = match class {
        MX_STRUCT => {
            let (_, len, r) = element(rest)?;
            let len = numbers(MI_INT32, len)?.first().copied().unwrap_or(0.0) as usize;
            let (_, names, r) = element(r)?;
            rest = r;
            if len == 0 {
                return Err("struct with a zero field-name length".into());
            }
            let fields: Vec<String> = names
                .chunks(len)
                .map(|c| String::from_utf8_lossy(c).trim_end_matches('\0').to_string())
                .collect();
            let mut elements = Vec::with_capacity(count);
            for _ in 0..count {
                let mut values = Vec::with_capacity(fields.len());
                for _ in &fields {
                    let (kind, sub, r) = element(rest)?;
                    rest = r;
                    if kind != MI_MATRIX {
                        return Err(format!("struct field of element type {kind}, expected 14"));
                    }
                    values.push(matrix(sub, depth + 1)?.1);
                }
                elements.push(values);
            }
            MatValue::Struct { fields, elements }
        }
        MX_CELL => {
            let mut cells = Vec::with_capacity(count);
            for _ in 0..count {
                let (kind, sub, r) = element(rest)?;
                rest = r;
                if kind != MI_MATRIX {
                    return Err(format!("cell of element type {kind}, expected 14"));
                }
                cells.push(matrix(sub, depth + 1)?.1);
            }
            MatValue::Cell(cells)
        }
        MX_CHAR => {
            if rest.is_empty() {
                MatValue::Char(String::new())
            } else {
                let (kind, data, _) = element(rest)?;
                MatValue::Char(text(kind, data, &dims)?)
            }
        }
        // Numeric classes: double, single, int8 … uint64.
        6..=15 => {
            if rest.is_empty() {
                MatValue::Numeric(Vec::new())
            } else {
                let (kind, data, _) = element(rest)?;
                MatValue::Numeric(numbers(kind, data)?)
            }
        }
        _ => MatValue::Other,
    };
    Ok((name, value))
}

fn numbers(kind: u32, data: &[u8]) -> Result<Vec<f64>, String> {
    macro_rules! each {
        ($t:ty) => {
            data.chunks_exact(std::mem::size_of::<$t>())
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")) as f64)
                .collect()
        };
    }
    Ok(match kind {
        MI_INT8 => data.iter().map(|&b| f64::from(b as i8)).collect(),
        MI_UINT8 | MI_UTF8 => data.iter().map(|&b| f64::from(b)).collect(),
        MI_INT16 => each!(i16),
        MI_UINT16 => each!(u16),
        MI_INT32 => each!(i32),
        MI_UINT32 => each!(u32),
        MI_SINGLE => each!(f32),
        MI_DOUBLE => each!(f64),
        MI_INT64 => each!(i64),
        MI_UINT64 => each!(u64),
        other => return Err(format!("numeric data of unknown type {other}")),
    })
}

/// Char data to a string; a 2-D char matrix is stored column-major, so rows are gathered.
fn text(kind: u32, data: &[u8], dims: &[usize]) -> Result<String, String> {
    let units: Vec<u32> = match kind {
        MI_UTF8 => return Ok(String::from_utf8_lossy(data).into_owned()),
        MI_UINT8 | MI_INT8 => data.iter().map(|&b| u32::from(b)).collect(),
        MI_UINT16 | MI_INT16 => {
            data.chunks_exact(2).map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]))).collect()
        }
        MI_UINT32 | MI_INT32 => {
            data.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4"))).collect()
        }
        other => return Err(format!("char data of type {other}")),
    };
    let rows = dims.first().copied().unwrap_or(1).max(1);
    let cols = units.len() / rows;
    let mut out = String::with_capacity(units.len());
    for r in 0..rows {
        for c in 0..cols {
            out.push(char::from_u32(units[c * rows + r]).unwrap_or('\u{fffd}'));
        }
    }
    Ok(out)
}
