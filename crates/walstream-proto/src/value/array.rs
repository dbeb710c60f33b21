//! Arrays: `array_out` / `array_in` text and `array_send` binary, any number of dimensions
//! (up to PostgreSQL's six), lower bounds and NULL elements.

use std::fmt::{self, Write as _};

use bytes::Bytes;

use super::text::{bad, is_pg_space};
use super::{TypeLookup, Value, ValueFormat, decode_in};
use crate::cursor::Cursor;
use crate::error::DecodeError;
use crate::types::Oid;

/// PostgreSQL's `MAXDIM`.
const MAX_DIMS: usize = 6;

/// One dimension of an array: its length and the index of its first element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArrayDim {
    /// Number of elements along this dimension.
    pub len: usize,
    /// Index of the first element (1 unless the array was built otherwise).
    pub lower_bound: i32,
}

/// An array value: dimensions and elements in row-major order ([`Value::Null`] for NULLs).
///
/// An empty array has no dimensions and no elements.
#[derive(Debug, Clone, PartialEq)]
pub struct PgArray {
    element_type: Oid,
    dims: Vec<ArrayDim>,
    elements: Vec<Value>,
}

impl PgArray {
    /// Builds an array; `None` unless the element count is the product of the dimension
    /// lengths (and there are at most six dimensions).
    pub fn new(element_type: Oid, dims: Vec<ArrayDim>, elements: Vec<Value>) -> Option<Self> {
        let total = dims
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(d.len))?;
        if dims.len() > MAX_DIMS || (dims.is_empty() && !elements.is_empty()) {
            return None;
        }
        if !dims.is_empty() && total != elements.len() {
            return None;
        }
        if total == 0 {
            return Some(Self {
                element_type,
                dims: Vec::new(),
                elements: Vec::new(),
            });
        }
        Some(Self {
            element_type,
            dims,
            elements,
        })
    }

    /// The element type's OID.
    pub fn element_type(&self) -> Oid {
        self.element_type
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[ArrayDim] {
        &self.dims
    }

    /// The elements in row-major order.
    pub fn elements(&self) -> &[Value] {
        &self.elements
    }

    /// Takes the elements.
    pub fn into_elements(self) -> Vec<Value> {
        self.elements
    }

    /// True for an array without elements.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    fn write_level<W: fmt::Write>(
        &self,
        dim: usize,
        idx: &mut usize,
        out: &mut W,
        leaf: &mut dyn FnMut(&Value, &mut W) -> fmt::Result,
        open: char,
        close: char,
    ) -> fmt::Result {
        out.write_char(open)?;
        let len = self.dims.get(dim).map_or(0, |d| d.len);
        for i in 0..len {
            if i > 0 {
                out.write_char(',')?;
            }
            if dim + 1 == self.dims.len() {
                let v = self.elements.get(*idx).ok_or(fmt::Error)?;
                *idx += 1;
                leaf(v, out)?;
            } else {
                self.write_level(dim + 1, idx, out, leaf, open, close)?;
            }
        }
        out.write_char(close)
    }

    pub(crate) fn write_json(&self, out: &mut String) {
        if self.dims.is_empty() {
            out.push_str("[]");
            return;
        }
        let mut idx = 0;
        let _ = self.write_level(
            0,
            &mut idx,
            out,
            &mut |v, o: &mut String| {
                v.write_json(o);
                Ok(())
            },
            '[',
            ']',
        );
    }
}

impl fmt::Display for PgArray {
    /// `array_out`: `{1,2}`, `[0:1]={1,2}`, `{{"a b",NULL}}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dims.is_empty() {
            return f.write_str("{}");
        }
        if self.dims.iter().any(|d| d.lower_bound != 1) {
            for d in &self.dims {
                let upper =
                    i64::from(d.lower_bound) + i64::try_from(d.len).map_err(|_| fmt::Error)? - 1;
                write!(f, "[{}:{}]", d.lower_bound, upper)?;
            }
            f.write_char('=')?;
        }
        let mut idx = 0;
        let mut scratch = String::new();
        self.write_level(
            0,
            &mut idx,
            f,
            &mut |v, out| {
                if v.is_null() {
                    return out.write_str("NULL");
                }
                scratch.clear();
                write!(scratch, "{v}")?;
                write_quoted_element(&scratch, out)
            },
            '{',
            '}',
        )
    }
}

/// `array_out`'s quoting: quote empty strings, `NULL`, and text with `"`, `\`, braces, the
/// delimiter or whitespace; escape `"` and `\` inside quotes.
fn write_quoted_element(s: &str, out: &mut impl fmt::Write) -> fmt::Result {
    let needs = s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.bytes()
            .any(|b| matches!(b, b'"' | b'\\' | b'{' | b'}' | b',') || is_pg_space(b));
    if !needs {
        return out.write_str(s);
    }
    out.write_char('"')?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.write_char('\\')?;
        }
        out.write_char(c)?;
    }
    out.write_char('"')
}

pub(crate) fn decode(
    types: &dyn TypeLookup,
    element: Oid,
    format: ValueFormat,
    data: Bytes,
    depth: u32,
) -> Result<PgArray, DecodeError> {
    match format {
        ValueFormat::Binary => decode_binary(types, element, data, depth),
        ValueFormat::Text => decode_text(types, element, data, depth),
    }
}

fn decode_binary(
    types: &dyn TypeLookup,
    element: Oid,
    data: Bytes,
    depth: u32,
) -> Result<PgArray, DecodeError> {
    let mut c = Cursor::new(data, "array");
    let at = c.offset();
    let ndim = c.i32()?;
    let ndim = usize::try_from(ndim)
        .ok()
        .filter(|n| *n <= MAX_DIMS)
        .ok_or(DecodeError::InvalidLength {
            context: "array",
            length: i64::from(ndim),
            offset: at,
        })?;
    let flags_at = c.offset();
    let flags = c.i32()?;
    if flags != 0 && flags != 1 {
        return Err(c.invalid(flags_at, "invalid array flags"));
    }
    let elem_at = c.offset();
    let elem = Oid(c.u32()?);
    if elem != element {
        return Err(c.invalid(elem_at, "array element type does not match the column type"));
    }
    let mut dims = Vec::with_capacity(ndim);
    let mut total: usize = 1;
    for _ in 0..ndim {
        let at = c.offset();
        let len = c.i32()?;
        let lower_bound = c.i32()?;
        let len_u = usize::try_from(len).map_err(|_| DecodeError::InvalidLength {
            context: "array",
            length: i64::from(len),
            offset: at,
        })?;
        if lower_bound.checked_add(len).is_none() {
            return Err(c.invalid(at, "array upper bound out of range"));
        }
        total = total
            .checked_mul(len_u)
            .ok_or_else(|| c.invalid(at, "array size overflows"))?;
        dims.push(ArrayDim {
            len: len_u,
            lower_bound,
        });
    }
    if ndim == 0 || total == 0 {
        c.finish()?;
        return Ok(PgArray {
            element_type: element,
            dims: Vec::new(),
            elements: Vec::new(),
        });
    }
    // Each element takes at least its 4-byte length word.
    let total = c.count(i64::try_from(total).unwrap_or(i64::MAX), 4, at)?;
    let mut elements = Vec::with_capacity(total);
    for _ in 0..total {
        let at = c.offset();
        let len = c.i32()?;
        if len == -1 {
            elements.push(Value::Null);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::InvalidLength {
            context: "array element",
            length: i64::from(len),
            offset: at,
        })?;
        let bytes = c.bytes(len)?;
        elements.push(decode_in(
            types,
            element,
            ValueFormat::Binary,
            bytes,
            depth,
        )?);
    }
    c.finish()?;
    Ok(PgArray {
        element_type: element,
        dims,
        elements,
    })
}

/// One element found by the text parser.
enum Item {
    Null,
    Text(Bytes),
}

struct TextParser<'a> {
    src: &'a Bytes,
    pos: usize,
    /// Length of each dimension, as first seen.
    dims: Vec<Option<usize>>,
    /// Depth at which elements sit, once known.
    leaf_depth: Option<usize>,
    items: Vec<Item>,
}

impl TextParser<'_> {
    fn err(&self, reason: &'static str) -> DecodeError {
        bad("array", self.pos, reason)
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b) if is_pg_space(b)) {
            self.pos += 1;
        }
    }

    /// Parses `{ ... }` at `depth`, the opening brace next.
    fn level(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth >= MAX_DIMS {
            return Err(self.err("more than six array dimensions"));
        }
        if self.peek() != Some(b'{') {
            return Err(self.err("expected '{'"));
        }
        self.pos += 1;
        if self.dims.len() <= depth {
            self.dims.push(None);
        }
        self.skip_ws();
        let mut count = 0usize;
        if self.peek() == Some(b'}') {
            // An empty inner level is only valid as the whole (empty) array.
            if depth != 0 {
                return Err(self.err("empty sub-array"));
            }
            self.pos += 1;
            self.dims.clear();
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() == Some(b'{') {
                if self.leaf_depth.is_some_and(|d| d <= depth) {
                    return Err(self.err("sub-array where an element was expected"));
                }
                self.level(depth + 1)?;
            } else {
                match self.leaf_depth {
                    Some(d) if d != depth => {
                        return Err(self.err("element where a sub-array was expected"));
                    }
                    _ => self.leaf_depth = Some(depth),
                }
                let item = self.element()?;
                self.items.push(item);
            }
            count += 1;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
        match self.dims.get(depth).copied().flatten() {
            Some(n) if n != count => Err(self.err("sub-arrays have different lengths")),
            _ => {
                if let Some(slot) = self.dims.get_mut(depth) {
                    *slot = Some(count);
                }
                Ok(())
            }
        }
    }

    /// One element, quoted or not, up to (not including) the `,` or `}` after it.
    fn element(&mut self) -> Result<Item, DecodeError> {
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        if self.peek() == Some(b'"') {
            self.pos += 1;
            let body = self.pos;
            loop {
                match self.peek() {
                    None => return Err(self.err("unterminated quoted element")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let buf = owned.get_or_insert_with(|| self.src[body..self.pos].to_vec());
                        let next =
                            self.src.get(self.pos + 1).copied().ok_or_else(|| {
                                bad("array", self.pos, "unexpected end after '\\'")
                            })?;
                        buf.push(next);
                        self.pos += 2;
                    }
                    Some(b) => {
                        if let Some(buf) = owned.as_mut() {
                            buf.push(b);
                        }
                        self.pos += 1;
                    }
                }
            }
            let end = self.pos;
            self.pos += 1;
            return Ok(Item::Text(match owned {
                Some(v) => Bytes::from(v),
                None => self.src.slice(body..end),
            }));
        }
        // Unquoted: backslash escapes, trailing unescaped whitespace is dropped.
        let mut last_significant = start;
        loop {
            match self.peek() {
                None => return Err(self.err("unexpected end of array")),
                Some(b',' | b'}') => break,
                Some(b'{' | b'"') => {
                    return Err(self.err("unexpected character in unquoted element"));
                }
                Some(b'\\') => {
                    let buf = owned.get_or_insert_with(|| self.src[start..self.pos].to_vec());
                    let next = self
                        .src
                        .get(self.pos + 1)
                        .copied()
                        .ok_or_else(|| bad("array", self.pos, "unexpected end after '\\'"))?;
                    buf.push(next);
                    self.pos += 2;
                    last_significant = self.pos;
                }
                Some(b) => {
                    if let Some(buf) = owned.as_mut() {
                        buf.push(b);
                    }
                    self.pos += 1;
                    if !is_pg_space(b) {
                        last_significant = self.pos;
                    }
                }
            }
        }
        let trailing_ws = self.pos - last_significant;
        match owned {
            Some(mut v) => {
                v.truncate(v.len() - trailing_ws.min(v.len()));
                Ok(Item::Text(Bytes::from(v)))
            }
            None => {
                let raw = self.src.slice(start..last_significant);
                if raw.is_empty() {
                    Err(self.err("empty unquoted element"))
                } else if raw.eq_ignore_ascii_case(b"NULL") {
                    Ok(Item::Null)
                } else {
                    Ok(Item::Text(raw))
                }
            }
        }
    }

    /// `[lb:ub][lb:ub]=` before the braces.
    fn dimension_decoration(&mut self) -> Result<Vec<(i32, i32)>, DecodeError> {
        let mut out = Vec::new();
        while self.peek() == Some(b'[') {
            if out.len() >= MAX_DIMS {
                return Err(self.err("more than six array dimensions"));
            }
            self.pos += 1;
            let first = self.int()?;
            let (lb, ub) = if self.peek() == Some(b':') {
                self.pos += 1;
                (first, self.int()?)
            } else {
                (1, first)
            };
            if self.peek() != Some(b']') {
                return Err(self.err("expected ']'"));
            }
            self.pos += 1;
            if ub < lb.saturating_sub(1) {
                return Err(self.err("upper bound below lower bound"));
            }
            out.push((lb, ub));
            self.skip_ws();
        }
        if !out.is_empty() {
            if self.peek() != Some(b'=') {
                return Err(self.err("expected '=' after the dimensions"));
            }
            self.pos += 1;
            self.skip_ws();
        }
        Ok(out)
    }

    fn int(&mut self) -> Result<i32, DecodeError> {
        let start = self.pos;
        if self.peek() == Some(b'-') || self.peek() == Some(b'+') {
            self.pos += 1;
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let s = std::str::from_utf8(&self.src[start..self.pos])
            .map_err(|_| self.err("invalid bound"))?;
        s.parse()
            .map_err(|_| bad("array", start, "invalid array bound"))
    }
}

fn decode_text(
    types: &dyn TypeLookup,
    element: Oid,
    data: Bytes,
    depth: u32,
) -> Result<PgArray, DecodeError> {
    let mut p = TextParser {
        src: &data,
        pos: 0,
        dims: Vec::new(),
        leaf_depth: None,
        items: Vec::new(),
    };
    p.skip_ws();
    let decoration = p.dimension_decoration()?;
    p.level(0)?;
    p.skip_ws();
    if p.pos != data.len() {
        return Err(DecodeError::TrailingBytes {
            context: "array",
            offset: p.pos,
            remaining: data.len() - p.pos,
        });
    }
    let lens: Vec<usize> = p.dims.iter().map(|d| d.unwrap_or(0)).collect();
    let mut dims: Vec<ArrayDim> = lens
        .iter()
        .map(|&len| ArrayDim {
            len,
            lower_bound: 1,
        })
        .collect();
    if !decoration.is_empty() {
        if decoration.len() != dims.len() {
            return Err(bad("array", 0, "dimensions do not match the array"));
        }
        for (d, (lb, ub)) in dims.iter_mut().zip(decoration) {
            let len = i64::from(ub) - i64::from(lb) + 1;
            if usize::try_from(len).ok() != Some(d.len) {
                return Err(bad("array", 0, "dimensions do not match the array"));
            }
            d.lower_bound = lb;
        }
    }
    let mut elements = Vec::with_capacity(p.items.len());
    for item in p.items {
        elements.push(match item {
            Item::Null => Value::Null,
            Item::Text(b) => decode_in(types, element, ValueFormat::Text, b, depth)?,
        });
    }
    if elements.is_empty() {
        dims.clear();
    }
    Ok(PgArray {
        element_type: element,
        dims,
        elements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::decode_value;

    fn t(oid: Oid, s: &str) -> Value {
        decode_value(oid, ValueFormat::Text, Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn bin(ndim: i32, elem: u32, dims: &[(i32, i32)], elems: &[Option<&[u8]>]) -> Bytes {
        let mut v = Vec::new();
        v.extend_from_slice(&ndim.to_be_bytes());
        v.extend_from_slice(&i32::from(elems.iter().any(Option::is_none)).to_be_bytes());
        v.extend_from_slice(&elem.to_be_bytes());
        for (len, lb) in dims {
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&lb.to_be_bytes());
        }
        for e in elems {
            match e {
                None => v.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    v.extend_from_slice(&i32::try_from(b.len()).unwrap().to_be_bytes());
                    v.extend_from_slice(b);
                }
            }
        }
        Bytes::from(v)
    }

    #[test]
    fn text_round_trips() {
        for (oid, s) in [
            (Oid::INT4_ARRAY, "{1,2,3}"),
            (Oid::INT4_ARRAY, "{}"),
            (Oid::INT4_ARRAY, "[0:1]={1,2}"),
            (Oid::INT4_ARRAY, "{{1,2},{3,4}}"),
            (Oid::INT4_ARRAY, "[-2:-1][3:4]={{1,NULL},{3,4}}"),
            (Oid::TEXT_ARRAY, r#"{"a b","NULL","",NULL,"x\"y\\z",plain}"#),
            (Oid::TEXT_ARRAY, r#"{"{}","a,b"}"#),
            (Oid::BYTEA_ARRAY, r#"{"\\x01ff"}"#),
            (Oid::INT4RANGE_ARRAY, r#"{"[1,3)",empty}"#),
            (Oid::NUMERIC_ARRAY, "{1.50,NaN,-Infinity}"),
            (
                Oid::TIMESTAMPTZ_ARRAY,
                r#"{"2024-01-02 03:04:05+00",infinity}"#,
            ),
            (Oid::INT4_ARRAY, "{{{1}},{{2}}}"),
        ] {
            assert_eq!(t(oid, s).to_string(), s, "{s}");
        }
    }

    #[test]
    fn text_parsing_details() {
        let v = t(Oid::TEXT_ARRAY, r#" { a\,b ,  "q" , null , n\ull, x y  } "#);
        let a = v.as_array().unwrap();
        let got: Vec<String> = a.elements().iter().map(ToString::to_string).collect();
        assert_eq!(got, ["a,b", "q", "NULL", "null", "x y"]);
        assert!(a.elements()[2].is_null());
        assert!(!a.elements()[3].is_null());
        assert_eq!(
            a.dims(),
            &[ArrayDim {
                len: 5,
                lower_bound: 1
            }]
        );
        let m = t(Oid::INT4_ARRAY, "[0:1][5:7]={{1,2,3},{4,5,6}}");
        assert_eq!(
            m.as_array().unwrap().dims(),
            &[
                ArrayDim {
                    len: 2,
                    lower_bound: 0
                },
                ArrayDim {
                    len: 3,
                    lower_bound: 5
                }
            ]
        );
        assert_eq!(m.to_json(), "[[1,2,3],[4,5,6]]");
        for bad in [
            "",
            "{",
            "{1,2",
            "{1,,2}",
            "{{1},2}",
            "{1,{2}}",
            "{{1,2},{3}}",
            "{{}}",
            "{1}x",
            "[1:3]={1,2}",
            "[1:2][1:2]={1,2}",
            "{\"a}",
            "{a\"b}",
            "{{{{{{{1}}}}}}}",
            "[2:1={1}",
            "{1 2}",
        ] {
            assert!(
                decode_value(
                    Oid::INT4_ARRAY,
                    ValueFormat::Text,
                    Bytes::copy_from_slice(bad.as_bytes())
                )
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn binary_arrays() {
        let one = 1i32.to_be_bytes();
        let two = 2i32.to_be_bytes();
        let b = bin(1, 23, &[(3, 0)], &[Some(&one), None, Some(&two)]);
        let v = decode_value(Oid::INT4_ARRAY, ValueFormat::Binary, b).unwrap();
        assert_eq!(v.to_string(), "[0:2]={1,NULL,2}");
        assert_eq!(v, t(Oid::INT4_ARRAY, "[0:2]={1,NULL,2}"));
        let empty =
            decode_value(Oid::INT4_ARRAY, ValueFormat::Binary, bin(0, 23, &[], &[])).unwrap();
        assert_eq!(empty, t(Oid::INT4_ARRAY, "{}"));
        assert_eq!(empty.to_json(), "[]");
        let two_d = bin(2, 25, &[(2, 1), (1, 1)], &[Some(b"a b"), Some(b"")]);
        let v = decode_value(Oid::TEXT_ARRAY, ValueFormat::Binary, two_d).unwrap();
        assert_eq!(v.to_string(), r#"{{"a b"},{""}}"#);
        assert_eq!(v.to_json(), r#"[["a b"],[""]]"#);
    }

    #[test]
    fn binary_rejects_garbage() {
        let one = 1i32.to_be_bytes();
        let cases = [
            bin(7, 23, &[(1, 1); 7], &[Some(&one)]),
            bin(-1, 23, &[], &[]),
            bin(1, 25, &[(1, 1)], &[Some(&one)]),
            bin(1, 23, &[(-1, 1)], &[]),
            bin(1, 23, &[(2, 1)], &[Some(&one)]),
            bin(1, 23, &[(1, i32::MAX)], &[Some(&one)]),
            bin(1, 23, &[(1_000_000_000, 1)], &[Some(&one)]),
            bin(2, 23, &[(65_536, 1), (65_536, 1)], &[Some(&one)]),
            bin(1, 23, &[(1, 1)], &[Some(&[0, 0, 1])]),
            Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 23]),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            assert!(
                decode_value(Oid::INT4_ARRAY, ValueFormat::Binary, c).is_err(),
                "case {i}"
            );
        }
        let mut trailing = bin(1, 23, &[(1, 1)], &[Some(&one)]).to_vec();
        trailing.push(0);
        assert!(decode_value(Oid::INT4_ARRAY, ValueFormat::Binary, Bytes::from(trailing)).is_err());
    }
}
