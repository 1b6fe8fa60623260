//! RADIUS attribute dictionary: loads FreeRADIUS-format dictionary files and renders values for logs.
//!
//! The dictionary is loaded once at start-up and then only read, so every lookup is a plain
//! `HashMap` probe. The accepted syntax is the subset of the FreeRADIUS format that the
//! project's own files under `dictionaries/` use:
//!
//! ```text
//! ATTRIBUTE   name  number  type  [flag,flag,...]    # flags: has_tag, encrypt=N, array, concat
//! VALUE       attribute-name  value-name  number
//! VENDOR      name  number  [format=T,L]
//! BEGIN-VENDOR name   ...   END-VENDOR name
//! $INCLUDE    file                                    # relative to the including file
//! ```
//!
//! Extended attributes (RFC 6929) are written with a dotted number such as `241.1`.
//! Anything outside this subset is rejected with the file and line, because a silently
//! skipped definition would show up much later as an `Attr-N` in the logs.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Deepest `$INCLUDE` nesting accepted. Real dictionary trees use two or three levels, so a
/// deeper chain is almost certainly a loop spelled through different paths.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// Where an attribute lives in the RADIUS attribute number spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrKey {
    /// A standard attribute, type 1..=255.
    Std(u8),
    /// A vendor-specific sub-attribute carried in attribute 26.
    Vendor { vendor: u32, typ: u32 },
    /// An RFC 6929 extended attribute, e.g. `241.1` is `Extended { parent: 241, ext: 1 }`.
    Extended { parent: u8, ext: u8 },
}

impl fmt::Display for AttrKey {
    /// The dotted numeric form used by `Attr-...` names for attributes the dictionary lacks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrKey::Std(n) => write!(f, "{n}"),
            AttrKey::Vendor { vendor, typ } => write!(f, "26.{vendor}.{typ}"),
            AttrKey::Extended { parent, ext } => write!(f, "{parent}.{ext}"),
        }
    }
}

/// Data type of an attribute value, as named in dictionary files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataType {
    String,
    Octets,
    IpAddr,
    Ipv4Prefix,
    Ipv6Addr,
    Ipv6Prefix,
    IfId,
    Integer,
    Byte,
    Short,
    Integer64,
    Signed,
    Date,
    Ether,
    Abinary,
    Tlv,
    Vsa,
    Extended,
    LongExtended,
    Evs,
    ComboIp,
}

impl DataType {
    /// Every type, in declaration order; keeps `from_keyword` and `keyword` in step.
    const ALL: [DataType; 21] = [
        DataType::String,
        DataType::Octets,
        DataType::IpAddr,
        DataType::Ipv4Prefix,
        DataType::Ipv6Addr,
        DataType::Ipv6Prefix,
        DataType::IfId,
        DataType::Integer,
        DataType::Byte,
        DataType::Short,
        DataType::Integer64,
        DataType::Signed,
        DataType::Date,
        DataType::Ether,
        DataType::Abinary,
        DataType::Tlv,
        DataType::Vsa,
        DataType::Extended,
        DataType::LongExtended,
        DataType::Evs,
        DataType::ComboIp,
    ];

    /// The keyword used for this type in dictionary files.
    pub fn keyword(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Octets => "octets",
            DataType::IpAddr => "ipaddr",
            DataType::Ipv4Prefix => "ipv4prefix",
            DataType::Ipv6Addr => "ipv6addr",
            DataType::Ipv6Prefix => "ipv6prefix",
            DataType::IfId => "ifid",
            DataType::Integer => "integer",
            DataType::Byte => "byte",
            DataType::Short => "short",
            DataType::Integer64 => "integer64",
            DataType::Signed => "signed",
            DataType::Date => "date",
            DataType::Ether => "ether",
            DataType::Abinary => "abinary",
            DataType::Tlv => "tlv",
            DataType::Vsa => "vsa",
            DataType::Extended => "extended",
            DataType::LongExtended => "long-extended",
            DataType::Evs => "evs",
            DataType::ComboIp => "combo-ip",
        }
    }

    /// Parses a dictionary type keyword, ignoring ASCII case.
    pub fn from_keyword(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|ty| ty.keyword().eq_ignore_ascii_case(word))
    }

    /// Wire size of one value for fixed-size types; `None` for variable-length ones.
    fn fixed_size(self) -> Option<usize> {
        match self {
            DataType::Byte => Some(1),
            DataType::Short => Some(2),
            DataType::IpAddr | DataType::Integer | DataType::Signed | DataType::Date => Some(4),
            DataType::Ether => Some(6),
            DataType::IfId | DataType::Integer64 => Some(8),
            DataType::Ipv6Addr => Some(16),
            _ => None,
        }
    }

    /// Largest number a VALUE may give this type, or `None` if VALUEs make no sense for it.
    fn value_limit(self) -> Option<u64> {
        match self {
            DataType::Byte => Some(u64::from(u8::MAX)),
            DataType::Short => Some(u64::from(u16::MAX)),
            DataType::Integer | DataType::Signed => Some(u64::from(u32::MAX)),
            DataType::Integer64 => Some(u64::MAX),
            _ => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// One attribute definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrDef {
    pub name: String,
    pub key: AttrKey,
    pub ty: DataType,
    /// RFC 2868 tag octet may precede the value.
    pub has_tag: bool,
    /// 0 = none, 1 = User-Password style, 2 = Tunnel-Password style (salted), 3 = Ascend.
    pub encrypt: u8,
    /// The value is a packed sequence of fixed-size elements.
    pub array: bool,
    /// Consecutive instances are joined into one value (e.g. EAP-Message).
    pub concat: bool,
}

impl AttrDef {
    /// Everything except the name: two definitions with the same shape may be aliases.
    fn same_shape(&self, other: &AttrDef) -> bool {
        self.key == other.key
            && self.ty == other.ty
            && self.has_tag == other.has_tag
            && self.encrypt == other.encrypt
            && self.array == other.array
            && self.concat == other.concat
    }
}

/// How a vendor lays out its sub-attribute headers (`VENDOR ... format=T,L`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorFormat {
    /// Octets in the vendor type field: 1, 2 or 4.
    pub type_size: u8,
    /// Octets in the vendor length field: 0, 1 or 2.
    pub len_size: u8,
}

impl Default for VendorFormat {
    /// The RFC 2865 section 5.26 suggested layout, used by nearly every vendor.
    fn default() -> Self {
        VendorFormat {
            type_size: 1,
            len_size: 1,
        }
    }
}

/// Failure to load a dictionary. Every variant names the file, and all but `Io` the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DictionaryError {
    #[error("cannot read dictionary {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: cannot read $INCLUDE file {}: {source}", path.display(), target.display())]
    Include {
        path: PathBuf,
        line: usize,
        target: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: $INCLUDE of {} loops back to a file that is already being read", path.display(), target.display())]
    IncludeLoop {
        path: PathBuf,
        line: usize,
        target: PathBuf,
    },
    #[error("{}:{line}: $INCLUDE of {} nests deeper than {MAX_INCLUDE_DEPTH} levels", path.display(), target.display())]
    IncludeDepth {
        path: PathBuf,
        line: usize,
        target: PathBuf,
    },
}

impl DictionaryError {
    /// The file the error was found in.
    pub fn path(&self) -> &Path {
        match self {
            DictionaryError::Io { path, .. }
            | DictionaryError::Parse { path, .. }
            | DictionaryError::Include { path, .. }
            | DictionaryError::IncludeLoop { path, .. }
            | DictionaryError::IncludeDepth { path, .. } => path,
        }
    }

    /// The 1-based line the error was found on, if it concerns a particular line.
    pub fn line(&self) -> Option<usize> {
        match self {
            DictionaryError::Io { .. } => None,
            DictionaryError::Parse { line, .. }
            | DictionaryError::Include { line, .. }
            | DictionaryError::IncludeLoop { line, .. }
            | DictionaryError::IncludeDepth { line, .. } => Some(*line),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct ValueTable {
    /// First name given to a number wins, so later aliases never change how values print.
    by_number: HashMap<u64, String>,
    /// Keyed by lowercase name: a name defined again must keep its number.
    by_name: HashMap<String, u64>,
}

#[derive(Debug, Clone)]
struct VendorDef {
    name: String,
    format: VendorFormat,
}

/// Attribute, value and vendor definitions, indexed for lookup in both directions.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    attrs: HashMap<AttrKey, AttrDef>,
    /// Lowercase name (including aliases) to key.
    names: HashMap<String, AttrKey>,
    values: HashMap<AttrKey, ValueTable>,
    vendors: HashMap<u32, VendorDef>,
    /// Lowercase vendor name to vendor id.
    vendor_names: HashMap<String, u32>,
}

impl Dictionary {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a dictionary file and everything it `$INCLUDE`s.
    pub fn load(path: &Path) -> Result<Self, DictionaryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DictionaryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut dict = Dictionary::new();
        dict.parse_str(path, &text)?;
        Ok(dict)
    }

    /// Adds the definitions in `text` as if it had been read from `origin`.
    ///
    /// `origin` names the text in errors and anchors relative `$INCLUDE`s. The call is
    /// all-or-nothing: on error the dictionary is left exactly as it was.
    pub fn parse_str(&mut self, origin: &Path, text: &str) -> Result<(), DictionaryError> {
        // Staging on a copy keeps a half-applied file from ever being observed; dictionaries
        // are small and this only runs at start-up or reload.
        let mut staged = self.clone();
        let mut loader = Loader {
            dict: &mut staged,
            pending_values: Vec::new(),
            open_files: vec![origin.to_path_buf()],
        };
        loader.parse_text(origin, text, 0)?;
        loader.resolve_values()?;
        *self = staged;
        Ok(())
    }

    pub fn attr(&self, key: AttrKey) -> Option<&AttrDef> {
        self.attrs.get(&key)
    }

    /// Looks an attribute up by name or alias, ignoring ASCII case.
    pub fn attr_by_name(&self, name: &str) -> Option<&AttrDef> {
        let key = self.names.get(&name.to_ascii_lowercase())?;
        self.attrs.get(key)
    }

    /// The VALUE name for `value` of attribute `key`.
    pub fn value_name(&self, key: AttrKey, value: u64) -> Option<&str> {
        self.values.get(&key)?.by_number.get(&value).map(String::as_str)
    }

    pub fn vendor_name(&self, id: u32) -> Option<&str> {
        self.vendors.get(&id).map(|v| v.name.as_str())
    }

    /// Looks a vendor up by name, ignoring ASCII case.
    pub fn vendor_id(&self, name: &str) -> Option<u32> {
        self.vendor_names.get(&name.to_ascii_lowercase()).copied()
    }

    /// Header layout of a vendor's sub-attributes, needed to split attribute 26.
    pub fn vendor_format(&self, id: u32) -> Option<VendorFormat> {
        self.vendors.get(&id).map(|v| v.format)
    }

    /// All attribute definitions, in no particular order (aliases are not repeated).
    pub fn attrs(&self) -> impl Iterator<Item = &AttrDef> {
        self.attrs.values()
    }

    /// Number of attributes (aliases are not counted twice).
    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    /// Render one attribute as `Name = value` for logs and test-auth output.
    ///
    /// Never fails: values of the wrong length, and attributes the dictionary does not know
    /// (named `Attr-N`, `Attr-26.VENDOR.TYPE` or `Attr-241.N`), are shown as `0x` hex.
    /// Encrypted attributes are also shown as hex, since on the wire they are ciphertext.
    pub fn format(&self, key: AttrKey, value: &[u8]) -> String {
        let Some(def) = self.attrs.get(&key) else {
            let mut out = format!("Attr-{key} = ");
            push_hex(&mut out, value);
            return out;
        };
        let mut out = String::with_capacity(def.name.len() + 8 + value.len() * 2);
        out.push_str(&def.name);
        let body = match split_tag(def, value) {
            Tagged::Integer { tag, value } => {
                push_tag(&mut out, Some(tag));
                out.push_str(" = ");
                self.push_number(&mut out, key, u64::from(value));
                return out;
            }
            Tagged::Bytes { tag, body } => {
                push_tag(&mut out, tag);
                body
            }
        };
        out.push_str(" = ");
        self.push_value(&mut out, def, body);
        out
    }

    fn push_value(&self, out: &mut String, def: &AttrDef, value: &[u8]) {
        if def.encrypt != 0 {
            push_hex(out, value);
            return;
        }
        if def.array
            && let Some(size) = def.ty.fixed_size()
            && value.len() > size
            && value.len().is_multiple_of(size)
        {
            for (i, element) in value.chunks_exact(size).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                self.push_scalar(out, def, element);
            }
            return;
        }
        self.push_scalar(out, def, value);
    }

    fn push_scalar(&self, out: &mut String, def: &AttrDef, value: &[u8]) {
        use std::fmt::Write as _;
        // Writing into a String cannot fail, so the fmt::Result is ignored throughout.
        match (def.ty, value.len()) {
            (DataType::String, _) => push_quoted(out, value),
            (DataType::Integer | DataType::Date, 4)
            | (DataType::Byte, 1)
            | (DataType::Short, 2)
            | (DataType::Integer64, 8) => {
                let number = value.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                if def.ty == DataType::Date {
                    let _ = write!(out, "{number}");
                } else {
                    self.push_number(out, def.key, number);
                }
            }
            (DataType::Signed, 4) => {
                let bits = [value[0], value[1], value[2], value[3]];
                match self.value_name(def.key, u64::from(u32::from_be_bytes(bits))) {
                    Some(name) => out.push_str(name),
                    None => {
                        let _ = write!(out, "{}", i32::from_be_bytes(bits));
                    }
                }
            }
            (DataType::IpAddr | DataType::ComboIp, 4) => {
                let _ = write!(out, "{}", Ipv4Addr::new(value[0], value[1], value[2], value[3]));
            }
            (DataType::Ipv6Addr | DataType::ComboIp, 16) => {
                let _ = write!(out, "{}", ipv6_from(value));
            }
            // RFC 8044: reserved octet, prefix length, then the four address octets.
            (DataType::Ipv4Prefix, 6) if value[1] <= 32 => {
                let addr = Ipv4Addr::new(value[2], value[3], value[4], value[5]);
                let _ = write!(out, "{addr}/{}", value[1]);
            }
            // RFC 3162: reserved octet, prefix length, then only as many address octets as
            // the sender chose to include; the rest are implicitly zero.
            (DataType::Ipv6Prefix, 2..=18) if value[1] <= 128 => {
                let _ = write!(out, "{}/{}", ipv6_from(&value[2..]), value[1]);
            }
            (DataType::IfId, 8) => {
                for (i, pair) in value.chunks_exact(2).enumerate() {
                    if i > 0 {
                        out.push(':');
                    }
                    push_hex_byte(out, pair[0]);
                    push_hex_byte(out, pair[1]);
                }
            }
            (DataType::Ether, 6) => {
                for (i, &b) in value.iter().enumerate() {
                    if i > 0 {
                        out.push(':');
                    }
                    push_hex_byte(out, b);
                }
            }
            _ => push_hex(out, value),
        }
    }

    fn push_number(&self, out: &mut String, key: AttrKey, number: u64) {
        use std::fmt::Write as _;
        match self.value_name(key, number) {
            Some(name) => out.push_str(name),
            None => {
                let _ = write!(out, "{number}");
            }
        }
    }
}

/// A value with any RFC 2868 tag octet separated out.
enum Tagged<'v> {
    /// Tagged integers give up their top octet to the tag, leaving 24 bits of value.
    Integer {
        tag: u8,
        value: u32,
    },
    Bytes {
        tag: Option<u8>,
        body: &'v [u8],
    },
}

fn split_tag<'v>(def: &AttrDef, value: &'v [u8]) -> Tagged<'v> {
    let untagged = Tagged::Bytes { tag: None, body: value };
    if !def.has_tag {
        return untagged;
    }
    match (def.ty, value) {
        (DataType::Integer, &[tag @ 0x01..=0x1f, a, b, c]) => Tagged::Integer {
            tag,
            value: u32::from_be_bytes([0, a, b, c]),
        },
        (DataType::Integer, _) => untagged,
        // RFC 2868: an octet above 0x1F is the start of the string, not a tag. A zero tag
        // means "no tunnel grouping" and is dropped without being shown.
        (_, &[tag @ 0x00..=0x1f, ref body @ ..]) => Tagged::Bytes {
            tag: (tag != 0).then_some(tag),
            body,
        },
        _ => untagged,
    }
}

fn push_tag(out: &mut String, tag: Option<u8>) {
    use std::fmt::Write as _;
    if let Some(tag) = tag {
        let _ = write!(out, ":{tag}");
    }
}

/// Builds an address from up to 16 octets, zero-filling the rest.
fn ipv6_from(octets: &[u8]) -> Ipv6Addr {
    let mut buf = [0u8; 16];
    let n = octets.len().min(16);
    buf[..n].copy_from_slice(&octets[..n]);
    Ipv6Addr::from(buf)
}

fn push_hex_byte(out: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(DIGITS[usize::from(b >> 4)]));
    out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    out.push_str("0x");
    for &b in bytes {
        push_hex_byte(out, b);
    }
}

fn push_escaped_byte(out: &mut String, b: u8) {
    out.push_str("\\x");
    push_hex_byte(out, b);
}

/// Characters that would let a client-supplied string forge or hide log content: control
/// characters (newlines, ANSI escapes) and the invisible/bidirectional formatting marks.
fn is_log_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}')
}

/// Quotes a string value, keeping printable UTF-8 and escaping everything else as `\xNN`.
fn push_quoted(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if is_log_unsafe(c) => {
                    let mut buf = [0u8; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        push_escaped_byte(out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            push_escaped_byte(out, b);
        }
    }
    out.push('"');
}

/// A VALUE line, kept until the whole load is read because FreeRADIUS files may give
/// VALUEs before the ATTRIBUTE they belong to.
struct PendingValue {
    path: PathBuf,
    line: usize,
    attr: String,
    name: String,
    number: u64,
}

/// The `BEGIN-VENDOR` block currently open in one file.
struct VendorBlock {
    id: u32,
    name: String,
    line: usize,
}

/// One parse position, for building errors.
#[derive(Clone, Copy)]
struct Pos<'a> {
    path: &'a Path,
    line: usize,
}

impl Pos<'_> {
    fn error(self, message: impl Into<String>) -> DictionaryError {
        DictionaryError::Parse {
            path: self.path.to_path_buf(),
            line: self.line,
            message: message.into(),
        }
    }
}

/// State for one `load`/`parse_str` call across all the files it includes.
struct Loader<'d> {
    dict: &'d mut Dictionary,
    pending_values: Vec<PendingValue>,
    /// The include chain, outermost first, for loop detection.
    open_files: Vec<PathBuf>,
}

impl Loader<'_> {
    fn parse_text(&mut self, path: &Path, text: &str, depth: usize) -> Result<(), DictionaryError> {
        // Vendor blocks are per file, so an included file never inherits its includer's.
        let mut block: Option<VendorBlock> = None;
        // Editors on Windows may prepend a byte-order mark, which would otherwise read as
        // part of the first keyword.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            let pos = Pos { path, line: index + 1 };
            let content = raw.split('#').next().unwrap_or_default();
            let fields: Vec<&str> = content.split_whitespace().collect();
            let Some((&keyword, args)) = fields.split_first() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "ATTRIBUTE" => self.attribute(pos, args, block.as_ref())?,
                "VALUE" => self.value(pos, args)?,
                "VENDOR" => self.vendor(pos, args)?,
                "BEGIN-VENDOR" => block = Some(self.begin_vendor(pos, args, block.as_ref())?),
                "END-VENDOR" => {
                    end_vendor(pos, args, block.as_ref())?;
                    block = None;
                }
                "$INCLUDE" => self.include(pos, args, depth, false)?,
                "$INCLUDE-" => self.include(pos, args, depth, true)?,
                _ => return Err(pos.error(format!("unknown keyword `{keyword}`"))),
            }
        }
        if let Some(open) = block {
            return Err(Pos { path, line: open.line }.error(format!(
                "BEGIN-VENDOR {} is not closed by END-VENDOR {} before the end of the file",
                open.name, open.name
            )));
        }
        Ok(())
    }

    fn attribute(&mut self, pos: Pos<'_>, args: &[&str], block: Option<&VendorBlock>) -> Result<(), DictionaryError> {
        let [name, number, type_word, rest @ ..] = args else {
            return Err(pos.error("ATTRIBUTE needs a name, a number and a type"));
        };
        if let [_, extra, ..] = rest {
            return Err(pos.error(format!("unexpected field `{extra}` after the flags")));
        }
        check_name(pos, name, "attribute")?;
        let key = match block {
            Some(block) => self.vendor_key(pos, number, block)?,
            None => parse_attr_number(pos, number)?,
        };
        let ty = DataType::from_keyword(type_word).ok_or_else(|| pos.error(format!("unknown type `{type_word}`")))?;
        check_type_fits_key(pos, ty, key)?;
        let mut def = AttrDef {
            name: (*name).to_string(),
            key,
            ty,
            has_tag: false,
            encrypt: 0,
            array: false,
            concat: false,
        };
        if let Some(flags) = rest.first() {
            parse_flags(pos, flags, &mut def)?;
        }
        self.define(pos, def)
    }

    fn vendor_key(&self, pos: Pos<'_>, number: &str, block: &VendorBlock) -> Result<AttrKey, DictionaryError> {
        if number.contains('.') {
            return Err(pos.error(format!(
                "dotted number `{number}` is not allowed inside BEGIN-VENDOR {}",
                block.name
            )));
        }
        let typ = parse_number(number).ok_or_else(|| pos.error(format!("bad attribute number `{number}`")))?;
        let format = self.dict.vendor_format(block.id).unwrap_or_default();
        let limit: u64 = match format.type_size {
            1 => 0xff,
            2 => 0xffff,
            _ => u64::from(u32::MAX),
        };
        match u32::try_from(typ) {
            Ok(typ) if u64::from(typ) <= limit => Ok(AttrKey::Vendor { vendor: block.id, typ }),
            _ => Err(pos.error(format!(
                "vendor attribute number {typ} is out of range for {} (at most {limit})",
                block.name
            ))),
        }
    }

    fn define(&mut self, pos: Pos<'_>, def: AttrDef) -> Result<(), DictionaryError> {
        let lname = def.name.to_ascii_lowercase();
        if let Some(existing) = self.dict.names.get(&lname).and_then(|key| self.dict.attrs.get(key)) {
            if existing.key != def.key {
                return Err(pos.error(format!(
                    "attribute {} is already defined with number {}",
                    def.name, existing.key
                )));
            }
            if !existing.same_shape(&def) {
                return Err(pos.error(format!(
                    "attribute {} is redefined with a different type or flags",
                    def.name
                )));
            }
            return Ok(());
        }
        if let Some(existing) = self.dict.attrs.get(&def.key) {
            // A second name for the same number is an alias, as long as it decodes the same.
            if !existing.same_shape(&def) {
                return Err(pos.error(format!(
                    "number {} is already used by {} with a different type or flags",
                    def.key, existing.name
                )));
            }
            self.dict.names.insert(lname, def.key);
            return Ok(());
        }
        self.dict.names.insert(lname, def.key);
        self.dict.attrs.insert(def.key, def);
        Ok(())
    }

    fn value(&mut self, pos: Pos<'_>, args: &[&str]) -> Result<(), DictionaryError> {
        let [attr, name, number] = args else {
            return Err(pos.error("VALUE needs an attribute name, a value name and a number"));
        };
        check_name(pos, name, "value")?;
        let number = parse_number(number).ok_or_else(|| pos.error(format!("bad value number `{number}`")))?;
        self.pending_values.push(PendingValue {
            path: pos.path.to_path_buf(),
            line: pos.line,
            attr: (*attr).to_string(),
            name: (*name).to_string(),
            number,
        });
        Ok(())
    }

    fn resolve_values(&mut self) -> Result<(), DictionaryError> {
        for pending in std::mem::take(&mut self.pending_values) {
            let pos = Pos {
                path: &pending.path,
                line: pending.line,
            };
            let def = self.dict.attr_by_name(&pending.attr).ok_or_else(|| {
                pos.error(format!(
                    "VALUE {} refers to undefined attribute {}",
                    pending.name, pending.attr
                ))
            })?;
            let Some(mut limit) = def.ty.value_limit() else {
                return Err(pos.error(format!(
                    "VALUE {} given for attribute {}, whose type {} cannot have named values",
                    pending.name, def.name, def.ty
                )));
            };
            if def.has_tag && def.ty == DataType::Integer {
                limit = 0x00ff_ffff;
            }
            if pending.number > limit {
                return Err(pos.error(format!(
                    "VALUE {} = {} does not fit attribute {} (at most {limit})",
                    pending.name, pending.number, def.name
                )));
            }
            let key = def.key;
            let lname = pending.name.to_ascii_lowercase();
            let table = self.dict.values.entry(key).or_default();
            if let Some(&existing) = table.by_name.get(&lname)
                && existing != pending.number
            {
                return Err(pos.error(format!(
                    "VALUE {} of {} is already defined as {existing}",
                    pending.name, pending.attr
                )));
            }
            table.by_name.insert(lname, pending.number);
            table.by_number.entry(pending.number).or_insert(pending.name);
        }
        Ok(())
    }

    fn vendor(&mut self, pos: Pos<'_>, args: &[&str]) -> Result<(), DictionaryError> {
        let [name, number, rest @ ..] = args else {
            return Err(pos.error("VENDOR needs a name and a number"));
        };
        if let [_, extra, ..] = rest {
            return Err(pos.error(format!("unexpected field `{extra}` after the format")));
        }
        check_name(pos, name, "vendor")?;
        // The Vendor-Id field's high octet is zero (RFC 2865 section 5.26), so only SMI
        // enterprise numbers up to 2^24 - 1 can appear on the wire.
        let id = parse_number(number)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=0x00ff_ffff).contains(n))
            .ok_or_else(|| pos.error(format!("bad vendor number `{number}` (must be 1..16777215)")))?;
        let format = match rest.first() {
            Some(option) => parse_vendor_format(pos, option)?,
            None => VendorFormat::default(),
        };
        let lname = name.to_ascii_lowercase();
        if let Some(&existing) = self.dict.vendor_names.get(&lname)
            && existing != id
        {
            return Err(pos.error(format!("vendor {name} is already defined with number {existing}")));
        }
        if let Some(existing) = self.dict.vendors.get(&id) {
            if !existing.name.eq_ignore_ascii_case(name) {
                return Err(pos.error(format!("vendor number {id} is already used by {}", existing.name)));
            }
            if existing.format != format {
                return Err(pos.error(format!("vendor {name} is redefined with a different format")));
            }
            return Ok(());
        }
        self.dict.vendor_names.insert(lname, id);
        self.dict.vendors.insert(
            id,
            VendorDef {
                name: (*name).to_string(),
                format,
            },
        );
        Ok(())
    }

    fn begin_vendor(
        &self,
        pos: Pos<'_>,
        args: &[&str],
        open: Option<&VendorBlock>,
    ) -> Result<VendorBlock, DictionaryError> {
        let [name, rest @ ..] = args else {
            return Err(pos.error("BEGIN-VENDOR needs a vendor name"));
        };
        if let Some(option) = rest.first() {
            return Err(pos.error(format!("BEGIN-VENDOR option `{option}` is not supported")));
        }
        if let Some(open) = open {
            return Err(pos.error(format!(
                "BEGIN-VENDOR {name} inside the still open BEGIN-VENDOR {} from line {}",
                open.name, open.line
            )));
        }
        let id = self.dict.vendor_id(name).ok_or_else(|| {
            pos.error(format!(
                "BEGIN-VENDOR names unknown vendor {name}; declare it with VENDOR first"
            ))
        })?;
        Ok(VendorBlock {
            id,
            name: self.dict.vendor_name(id).unwrap_or(name).to_string(),
            line: pos.line,
        })
    }

    fn include(&mut self, pos: Pos<'_>, args: &[&str], depth: usize, optional: bool) -> Result<(), DictionaryError> {
        let [target] = args else {
            return Err(pos.error("$INCLUDE needs exactly one file name"));
        };
        let base = pos.path.parent().unwrap_or_else(|| Path::new(""));
        let target = base.join(target);
        let include_error = |source: std::io::Error| DictionaryError::Include {
            path: pos.path.to_path_buf(),
            line: pos.line,
            target: target.clone(),
            source,
        };
        let identity = match std::fs::canonicalize(&target) {
            Ok(identity) => identity,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(include_error(e)),
        };
        // Compared by canonical path so `./a` and `sub/../a` are recognised as the same file.
        let looping = self
            .open_files
            .iter()
            .any(|open| std::fs::canonicalize(open).is_ok_and(|open| open == identity));
        if looping {
            return Err(DictionaryError::IncludeLoop {
                path: pos.path.to_path_buf(),
                line: pos.line,
                target: target.clone(),
            });
        }
        if depth + 1 > MAX_INCLUDE_DEPTH {
            return Err(DictionaryError::IncludeDepth {
                path: pos.path.to_path_buf(),
                line: pos.line,
                target: target.clone(),
            });
        }
        let text = std::fs::read_to_string(&target).map_err(include_error)?;
        self.open_files.push(target.clone());
        let result = self.parse_text(&target, &text, depth + 1);
        self.open_files.pop();
        result
    }
}

fn end_vendor(pos: Pos<'_>, args: &[&str], open: Option<&VendorBlock>) -> Result<(), DictionaryError> {
    let [name] = args else {
        return Err(pos.error("END-VENDOR needs exactly one vendor name"));
    };
    match open {
        None => Err(pos.error(format!("END-VENDOR {name} without a matching BEGIN-VENDOR"))),
        Some(open) if !open.name.eq_ignore_ascii_case(name) => Err(pos.error(format!(
            "END-VENDOR {name} does not match BEGIN-VENDOR {} from line {}",
            open.name, open.line
        ))),
        Some(_) => Ok(()),
    }
}

/// Parses a decimal or `0x` hexadecimal number, rejecting signs and empty digits.
fn parse_number(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Parses the number of an attribute outside any vendor block: `N` or `parent.ext`.
fn parse_attr_number(pos: Pos<'_>, text: &str) -> Result<AttrKey, DictionaryError> {
    let bad = || pos.error(format!("bad attribute number `{text}`"));
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        [number] => {
            let n = parse_number(number).ok_or_else(bad)?;
            match u8::try_from(n) {
                Ok(n) if n != 0 => Ok(AttrKey::Std(n)),
                _ => Err(pos.error(format!("attribute number {n} is outside 1..255"))),
            }
        }
        [parent, ext] => {
            let parent = parse_number(parent).ok_or_else(bad)?;
            let ext = parse_number(ext).ok_or_else(bad)?;
            let parent = u8::try_from(parent)
                .ok()
                .filter(|p| (241..=246).contains(p))
                .ok_or_else(|| {
                    pos.error(format!(
                        "dotted number `{text}`: only the extended attributes 241..246 have sub-types"
                    ))
                })?;
            let ext = u8::try_from(ext)
                .ok()
                .filter(|&e| e != 0)
                .ok_or_else(|| pos.error(format!("dotted number `{text}`: extended type must be 1..255")))?;
            Ok(AttrKey::Extended { parent, ext })
        }
        _ => Err(pos.error(format!(
            "attribute number `{text}` has more than two parts; nested extended and EVS numbers are not supported"
        ))),
    }
}

/// Rejects the container types where they cannot occur, which otherwise would only show
/// up as undecodable packets.
fn check_type_fits_key(pos: Pos<'_>, ty: DataType, key: AttrKey) -> Result<(), DictionaryError> {
    let ok = match ty {
        DataType::Vsa => key == AttrKey::Std(26),
        DataType::Extended => matches!(key, AttrKey::Std(241..=244)),
        DataType::LongExtended => matches!(key, AttrKey::Std(245..=246)),
        DataType::Evs => matches!(key, AttrKey::Extended { ext: 26, .. }),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(pos.error(format!("type {ty} cannot be used for attribute number {key}")))
    }
}

fn parse_flags(pos: Pos<'_>, flags: &str, def: &mut AttrDef) -> Result<(), DictionaryError> {
    for flag in flags.split(',') {
        match flag {
            "has_tag" => def.has_tag = true,
            "array" => def.array = true,
            "concat" => def.concat = true,
            _ => {
                let Some(method) = flag.strip_prefix("encrypt=") else {
                    return Err(pos.error(format!("unknown flag `{flag}`")));
                };
                def.encrypt = method
                    .parse::<u8>()
                    .ok()
                    .filter(|m| *m <= 3)
                    .ok_or_else(|| pos.error(format!("bad encryption method `{method}` (must be 0..3)")))?;
            }
        }
    }
    let ty = def.ty;
    if def.has_tag && !matches!(ty, DataType::Integer | DataType::String | DataType::Octets) {
        return Err(pos.error(format!("has_tag cannot be used with type {ty}")));
    }
    if def.encrypt != 0 && !matches!(ty, DataType::String | DataType::Octets) {
        return Err(pos.error(format!("encrypt cannot be used with type {ty}")));
    }
    if def.array && (ty.fixed_size().is_none() || def.has_tag) {
        return Err(pos.error(format!("array needs a fixed-size type without has_tag, not {ty}")));
    }
    if def.concat && (ty != DataType::Octets || def.has_tag || def.array || def.encrypt != 0) {
        return Err(pos.error("concat can only be used alone, on an octets attribute"));
    }
    Ok(())
}

fn parse_vendor_format(pos: Pos<'_>, option: &str) -> Result<VendorFormat, DictionaryError> {
    let bad = || {
        pos.error(format!(
            "bad VENDOR option `{option}` (expected format=T,L with T in 1,2,4 and L in 0,1,2)"
        ))
    };
    let spec = option.strip_prefix("format=").ok_or_else(bad)?;
    let parts: Vec<&str> = spec.split(',').collect();
    let (type_size, len_size) = match parts.as_slice() {
        [t, l] => (*t, *l),
        // WiMAX's continuation-flag layout; the extra octet is handled by the codec.
        [t, l, "c"] if *t == "1" && *l == "1" => (*t, *l),
        _ => return Err(bad()),
    };
    let type_size = match type_size {
        "1" => 1,
        "2" => 2,
        "4" => 4,
        _ => return Err(bad()),
    };
    let len_size = match len_size {
        "0" => 0,
        "1" => 1,
        "2" => 2,
        _ => return Err(bad()),
    };
    Ok(VendorFormat { type_size, len_size })
}

/// Names may only use characters that cannot be confused with the syntax around them,
/// in particular not `:` (tag separator in output) or `=`.
fn check_name(pos: Pos<'_>, name: &str, what: &str) -> Result<(), DictionaryError> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(pos.error(format!("bad {what} name `{name}` (letters, digits and - _ . / only)")))
    }
}

/// The dictionary files shipped in `dictionaries/`, compiled in so that the
/// binary names attributes without any file beside it. Order as in the
/// top-level `dictionary` file.
const BUILTIN: &[(&str, &str)] = &[
    (
        "dictionary.rfc2865",
        include_str!("../../dictionaries/dictionary.rfc2865"),
    ),
    (
        "dictionary.rfc2866",
        include_str!("../../dictionaries/dictionary.rfc2866"),
    ),
    (
        "dictionary.rfc2868",
        include_str!("../../dictionaries/dictionary.rfc2868"),
    ),
    (
        "dictionary.rfc2869",
        include_str!("../../dictionaries/dictionary.rfc2869"),
    ),
    (
        "dictionary.rfc3162",
        include_str!("../../dictionaries/dictionary.rfc3162"),
    ),
    (
        "dictionary.rfc3580",
        include_str!("../../dictionaries/dictionary.rfc3580"),
    ),
    (
        "dictionary.rfc5176",
        include_str!("../../dictionaries/dictionary.rfc5176"),
    ),
    (
        "dictionary.rfc6929",
        include_str!("../../dictionaries/dictionary.rfc6929"),
    ),
    (
        "dictionary.microsoft",
        include_str!("../../dictionaries/dictionary.microsoft"),
    ),
    ("dictionary.cisco", include_str!("../../dictionaries/dictionary.cisco")),
];

impl Dictionary {
    /// The dictionaries compiled into the binary.
    pub fn builtin() -> Result<Dictionary, DictionaryError> {
        let mut d = Dictionary::new();
        for (name, text) in BUILTIN {
            d.parse_str(Path::new(&format!("<builtin>/{name}")), text)?;
        }
        Ok(d)
    }
}

/// Every attribute of a packet as `Name = value`, vendor sub-attributes
/// named one by one. Passwords are never rendered.
pub fn describe(dict: &Dictionary, packet: &super::Packet<'_>) -> Vec<String> {
    use super::AttrType as Wire;
    let mut out = Vec::new();
    for a in packet.attrs() {
        if a.typ == Wire::USER_PASSWORD || a.typ == Wire::CHAP_PASSWORD {
            let name = dict
                .attr(AttrKey::Std(a.typ.0))
                .map(|d| d.name.as_str())
                .unwrap_or("password");
            out.push(format!("{name} = <hidden>"));
            continue;
        }
        if a.typ == Wire::VENDOR_SPECIFIC
            && let Some(subs) = super::attr::parse_vsa(a.value)
        {
            for v in subs {
                out.push(dict.format(
                    AttrKey::Vendor {
                        vendor: v.vendor,
                        typ: u32::from(v.typ),
                    },
                    v.value,
                ));
            }
            continue;
        }
        if a.typ.is_extended()
            && !a.typ.is_long_extended()
            && let Some((&ext, rest)) = a.value.split_first()
        {
            out.push(dict.format(AttrKey::Extended { parent: a.typ.0, ext }, rest));
            continue;
        }
        out.push(dict.format(AttrKey::Std(a.typ.0), a.value));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn builtin_matches_the_files() {
        let b = super::Dictionary::builtin().unwrap();
        let f =
            super::Dictionary::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dictionaries/dictionary"))
                .unwrap();
        assert_eq!(b.len(), f.len());
        assert!(b.len() > 100);
    }

    use super::*;
    use std::fs;

    fn parse(text: &str) -> Result<Dictionary, DictionaryError> {
        let mut dict = Dictionary::new();
        dict.parse_str(Path::new("test.dict"), text)?;
        Ok(dict)
    }

    fn parsed(text: &str) -> Dictionary {
        match parse(text) {
            Ok(dict) => dict,
            Err(e) => panic!("unexpected parse error: {e}"),
        }
    }

    /// Asserts that `text` fails on `line` with a message containing `needle`.
    fn assert_parse_error(text: &str, line: usize, needle: &str) {
        match parse(text) {
            Ok(_) => panic!("expected an error on line {line} containing {needle:?}"),
            Err(e) => {
                let shown = e.to_string();
                assert_eq!(e.line(), Some(line), "wrong line in: {shown}");
                assert!(shown.contains(needle), "{shown:?} lacks {needle:?}");
                assert!(shown.starts_with(&format!("test.dict:{line}: ")), "{shown}");
            }
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create dir");
        }
        fs::write(&path, text).expect("write dictionary");
        path
    }

    const SAMPLE: &str = "\
# comment line
ATTRIBUTE\tUser-Name\t1\tstring   # trailing comment
ATTRIBUTE\tService-Type\t6\tinteger
VALUE\tService-Type\tFramed-User\t2
VALUE Service-Type Login-User 0x1

ATTRIBUTE Tunnel-Type 64 integer has_tag
ATTRIBUTE Tunnel-Password 69 string has_tag,encrypt=2
ATTRIBUTE Tunnel-Private-Group-Id 81 string has_tag
VALUE Tunnel-Type VLAN 13
ATTRIBUTE EAP-Message 79 octets concat
ATTRIBUTE NAS-IP-Address 4 ipaddr
ATTRIBUTE Event-Timestamp 55 date
ATTRIBUTE NAS-IPv6-Address 95 ipv6addr
ATTRIBUTE Framed-Interface-Id 96 ifid
ATTRIBUTE Framed-IPv6-Prefix 97 ipv6prefix
ATTRIBUTE Framed-IPv4-Prefix 150 ipv4prefix
ATTRIBUTE Chaddr 151 ether
ATTRIBUTE Some-Byte 152 byte
ATTRIBUTE Some-Short 153 short
ATTRIBUTE Some-Counter 154 integer64
ATTRIBUTE Some-Signed 155 signed
ATTRIBUTE Some-Addrs 156 ipaddr array
ATTRIBUTE Some-Combo 157 combo-ip
ATTRIBUTE State 24 octets
ATTRIBUTE Extended-Attribute-1 241 extended
ATTRIBUTE Extended-Attribute-5 245 long-extended
ATTRIBUTE Frag-Status 241.1 integer
VALUE Some-Byte Small 7
VALUE Some-Short Medium 300

VENDOR Microsoft 311
BEGIN-VENDOR Microsoft
ATTRIBUTE MS-MPPE-Send-Key 16 octets encrypt=2
ATTRIBUTE MS-MPPE-Encryption-Policy 7 integer
VALUE MS-MPPE-Encryption-Policy Encryption-Required 2
END-VENDOR Microsoft
VENDOR Wide 4242 format=2,2
BEGIN-VENDOR Wide
ATTRIBUTE Wide-Thing 1000 string
END-VENDOR Wide
";

    #[test]
    fn parses_attributes_values_and_vendors() {
        let dict = parsed(SAMPLE);
        let user = dict.attr(AttrKey::Std(1)).expect("User-Name");
        assert_eq!(user.name, "User-Name");
        assert_eq!(user.ty, DataType::String);
        assert!(!user.has_tag && user.encrypt == 0 && !user.array && !user.concat);

        let service = dict.attr_by_name("Service-Type").expect("Service-Type");
        assert_eq!(service.key, AttrKey::Std(6));
        assert_eq!(dict.value_name(AttrKey::Std(6), 2), Some("Framed-User"));
        assert_eq!(dict.value_name(AttrKey::Std(6), 1), Some("Login-User"));

        let tunnel_password = dict.attr(AttrKey::Std(69)).expect("Tunnel-Password");
        assert!(tunnel_password.has_tag);
        assert_eq!(tunnel_password.encrypt, 2);
        assert!(dict.attr(AttrKey::Std(79)).expect("EAP-Message").concat);
        assert!(dict.attr(AttrKey::Std(156)).expect("Some-Addrs").array);

        let key = AttrKey::Vendor { vendor: 311, typ: 16 };
        let send_key = dict.attr(key).expect("MS-MPPE-Send-Key");
        assert_eq!(send_key.name, "MS-MPPE-Send-Key");
        assert_eq!(send_key.encrypt, 2);
        assert_eq!(dict.vendor_name(311), Some("Microsoft"));
        assert_eq!(dict.vendor_id("microsoft"), Some(311));
        assert_eq!(dict.vendor_format(311), Some(VendorFormat::default()));
        assert_eq!(
            dict.vendor_format(4242),
            Some(VendorFormat {
                type_size: 2,
                len_size: 2
            })
        );
        assert!(
            dict.attr(AttrKey::Vendor {
                vendor: 4242,
                typ: 1000
            })
            .is_some()
        );

        let frag = dict.attr_by_name("Frag-Status").expect("Frag-Status");
        assert_eq!(frag.key, AttrKey::Extended { parent: 241, ext: 1 });
        assert_eq!(dict.attr(AttrKey::Std(245)).map(|d| d.ty), Some(DataType::LongExtended));
        assert_eq!(dict.len(), dict.attrs().count());
        assert!(!dict.is_empty());
        assert!(Dictionary::new().is_empty());
    }

    #[test]
    fn lookups_ignore_case() {
        let dict = parsed(SAMPLE);
        assert_eq!(dict.attr_by_name("uSeR-nAmE").map(|d| d.key), Some(AttrKey::Std(1)));
        assert_eq!(dict.vendor_id("MICROSOFT"), Some(311));
        assert!(dict.attr_by_name("No-Such-Attribute").is_none());
        assert!(dict.value_name(AttrKey::Std(6), 99).is_none());
        assert!(dict.vendor_name(9).is_none());
    }

    #[test]
    fn keywords_and_types_are_case_insensitive() {
        let dict = parsed("attribute Foo 200 Integer\nvalue Foo Bar 1\n");
        assert_eq!(dict.attr(AttrKey::Std(200)).map(|d| d.ty), Some(DataType::Integer));
        assert_eq!(dict.value_name(AttrKey::Std(200), 1), Some("Bar"));
    }

    #[test]
    fn every_type_keyword_round_trips() {
        for ty in DataType::ALL {
            assert_eq!(DataType::from_keyword(ty.keyword()), Some(ty));
            assert_eq!(ty.to_string(), ty.keyword());
        }
        assert_eq!(DataType::from_keyword("ipv4addr"), None);
    }

    #[test]
    fn value_may_precede_its_attribute() {
        let dict = parsed("VALUE Late-Attr First 1\nATTRIBUTE Late-Attr 200 integer\n");
        assert_eq!(dict.value_name(AttrKey::Std(200), 1), Some("First"));
    }

    #[test]
    fn value_aliases_keep_the_first_name_for_printing() {
        let dict = parsed("ATTRIBUTE A 200 integer\nVALUE A One 1\nVALUE A Uno 1\nVALUE A One 1\n");
        assert_eq!(dict.value_name(AttrKey::Std(200), 1), Some("One"));
    }

    #[test]
    fn identical_redefinition_and_aliases_are_accepted() {
        let dict = parsed(
            "ATTRIBUTE Foo 200 string\nATTRIBUTE Foo 200 string\nATTRIBUTE Foo-Alias 200 string\n\
             VENDOR Acme 999\nVENDOR Acme 999\n",
        );
        assert_eq!(dict.len(), 1);
        assert_eq!(dict.attr_by_name("Foo-Alias").map(|d| d.name.as_str()), Some("Foo"));
        assert_eq!(dict.vendor_id("Acme"), Some(999));
    }

    #[test]
    fn leading_byte_order_mark_and_crlf_are_accepted() {
        let dict = parsed("\u{feff}ATTRIBUTE A 1 integer\r\nVALUE A B 2\r\n");
        assert_eq!(dict.value_name(AttrKey::Std(1), 2), Some("B"));
    }

    #[test]
    fn numbers_accept_hex() {
        let dict = parsed("ATTRIBUTE Foo 0xC8 integer\nVENDOR Acme 0x10\n");
        assert!(dict.attr(AttrKey::Std(200)).is_some());
        assert_eq!(dict.vendor_id("Acme"), Some(16));
    }

    #[test]
    fn failed_parse_leaves_dictionary_unchanged() {
        let mut dict = parsed("ATTRIBUTE Keep 1 string\n");
        let result = dict.parse_str(Path::new("bad.dict"), "ATTRIBUTE Added 2 string\nVALUE Nope X 1\n");
        assert!(result.is_err());
        assert_eq!(dict.len(), 1);
        assert!(dict.attr_by_name("Added").is_none());
        // A second, valid call can still extend it and refer to earlier definitions.
        dict.parse_str(
            Path::new("more.dict"),
            "VALUE Keep-Int A 1\nATTRIBUTE Keep-Int 3 integer\n",
        )
        .expect("valid extension");
        assert_eq!(dict.len(), 2);
    }

    // --- error cases -------------------------------------------------------------------

    #[test]
    fn error_unknown_keyword() {
        assert_parse_error(
            "ATTRIBUTE A 1 string\nFROBNICATE x\n",
            2,
            "unknown keyword `FROBNICATE`",
        );
    }

    #[test]
    fn error_bad_attribute_numbers() {
        assert_parse_error("\nATTRIBUTE A one string\n", 2, "bad attribute number `one`");
        assert_parse_error("ATTRIBUTE A -1 string\n", 1, "bad attribute number");
        assert_parse_error("ATTRIBUTE A 0 string\n", 1, "outside 1..255");
        assert_parse_error("ATTRIBUTE A 256 string\n", 1, "outside 1..255");
        assert_parse_error("ATTRIBUTE A 0x string\n", 1, "bad attribute number");
        assert_parse_error(
            "ATTRIBUTE A 99999999999999999999999 string\n",
            1,
            "bad attribute number",
        );
    }

    #[test]
    fn error_bad_dotted_numbers() {
        assert_parse_error("ATTRIBUTE A 240.1 integer\n", 1, "only the extended attributes");
        assert_parse_error("ATTRIBUTE A 241.0 integer\n", 1, "extended type must be 1..255");
        assert_parse_error("ATTRIBUTE A 241.256 integer\n", 1, "extended type must be 1..255");
        assert_parse_error("ATTRIBUTE A 241.26.9.1 integer\n", 1, "more than two parts");
        assert_parse_error("ATTRIBUTE A 241. integer\n", 1, "bad attribute number");
        assert_parse_error(
            "VENDOR V 9\nBEGIN-VENDOR V\nATTRIBUTE A 241.1 integer\nEND-VENDOR V\n",
            3,
            "not allowed inside BEGIN-VENDOR",
        );
    }

    #[test]
    fn error_vendor_attribute_out_of_range() {
        assert_parse_error(
            "VENDOR V 9\nBEGIN-VENDOR V\nATTRIBUTE A 256 string\nEND-VENDOR V\n",
            3,
            "out of range",
        );
        assert_parse_error(
            "VENDOR V 9 format=2,1\nBEGIN-VENDOR V\nATTRIBUTE A 65536 string\nEND-VENDOR V\n",
            3,
            "out of range",
        );
    }

    #[test]
    fn error_unknown_type() {
        assert_parse_error("ATTRIBUTE A 1 text\n", 1, "unknown type `text`");
    }

    #[test]
    fn error_missing_or_extra_fields() {
        assert_parse_error("ATTRIBUTE A 1\n", 1, "needs a name, a number and a type");
        assert_parse_error("ATTRIBUTE A 1 string has_tag extra\n", 1, "unexpected field `extra`");
        assert_parse_error("VALUE A B\n", 1, "VALUE needs");
        assert_parse_error("VENDOR V\n", 1, "VENDOR needs");
        assert_parse_error("VENDOR V 9 format=1,1 x\n", 1, "unexpected field `x`");
        assert_parse_error("BEGIN-VENDOR\n", 1, "needs a vendor name");
        assert_parse_error("VENDOR V 9\nBEGIN-VENDOR V\nEND-VENDOR\n", 3, "exactly one vendor name");
        assert_parse_error("$INCLUDE\n", 1, "exactly one file name");
    }

    #[test]
    fn error_bad_names() {
        assert_parse_error("ATTRIBUTE Bad:Name 1 string\n", 1, "bad attribute name");
        assert_parse_error("ATTRIBUTE A 1 integer\nVALUE A Bad=Name 1\n", 2, "bad value name");
        assert_parse_error("VENDOR Bad\"Name 9\n", 1, "bad vendor name");
    }

    #[test]
    fn error_value_for_undefined_attribute() {
        assert_parse_error(
            "ATTRIBUTE A 1 integer\nVALUE A X 1\nVALUE Missing-Attr Y 2\n",
            3,
            "undefined attribute Missing-Attr",
        );
    }

    #[test]
    fn error_value_bad_number() {
        assert_parse_error("ATTRIBUTE A 1 integer\nVALUE A X many\n", 2, "bad value number `many`");
    }

    #[test]
    fn error_value_on_non_numeric_type() {
        assert_parse_error("ATTRIBUTE A 1 string\nVALUE A X 1\n", 2, "cannot have named values");
    }

    #[test]
    fn error_value_out_of_range() {
        assert_parse_error("ATTRIBUTE A 1 byte\nVALUE A X 256\n", 2, "does not fit");
        assert_parse_error("ATTRIBUTE A 1 short\nVALUE A X 65536\n", 2, "does not fit");
        assert_parse_error("ATTRIBUTE A 1 integer\nVALUE A X 4294967296\n", 2, "does not fit");
        // Tagged integers have only 24 bits left for the value.
        assert_parse_error(
            "ATTRIBUTE A 64 integer has_tag\nVALUE A X 16777216\n",
            2,
            "does not fit",
        );
        parsed("ATTRIBUTE A 1 integer64\nVALUE A X 18446744073709551615\n");
    }

    #[test]
    fn error_value_redefined_with_other_number() {
        assert_parse_error(
            "ATTRIBUTE A 1 integer\nVALUE A X 1\nVALUE A x 2\n",
            3,
            "already defined as 1",
        );
    }

    #[test]
    fn error_duplicate_attribute_name_with_other_number() {
        assert_parse_error(
            "ATTRIBUTE A 1 string\n\nATTRIBUTE A 2 string\n",
            3,
            "already defined with number 1",
        );
    }

    #[test]
    fn error_attribute_redefined_with_other_type() {
        assert_parse_error("ATTRIBUTE A 1 string\nATTRIBUTE A 1 octets\n", 2, "different type");
        assert_parse_error(
            "ATTRIBUTE A 1 string\nATTRIBUTE A 1 string has_tag\n",
            2,
            "different type or flags",
        );
        assert_parse_error("ATTRIBUTE A 1 string\nATTRIBUTE B 1 integer\n", 2, "already used by A");
    }

    #[test]
    fn error_bad_flags() {
        assert_parse_error("ATTRIBUTE A 1 string secret\n", 1, "unknown flag `secret`");
        assert_parse_error("ATTRIBUTE A 1 string encrypt=9\n", 1, "bad encryption method");
        assert_parse_error("ATTRIBUTE A 1 string encrypt=x\n", 1, "bad encryption method");
        assert_parse_error("ATTRIBUTE A 1 string has_tag,\n", 1, "unknown flag ``");
        assert_parse_error("ATTRIBUTE A 1 ipaddr has_tag\n", 1, "has_tag cannot be used");
        assert_parse_error("ATTRIBUTE A 1 integer encrypt=1\n", 1, "encrypt cannot be used");
        assert_parse_error("ATTRIBUTE A 1 string array\n", 1, "array needs");
        assert_parse_error("ATTRIBUTE A 1 string concat\n", 1, "concat can only");
        assert_parse_error("ATTRIBUTE A 1 octets concat,encrypt=1\n", 1, "concat can only");
    }

    #[test]
    fn error_container_type_on_wrong_number() {
        assert_parse_error("ATTRIBUTE A 1 vsa\n", 1, "type vsa cannot be used");
        assert_parse_error("ATTRIBUTE A 245 extended\n", 1, "type extended cannot be used");
        assert_parse_error("ATTRIBUTE A 241 long-extended\n", 1, "long-extended cannot");
        assert_parse_error(
            "ATTRIBUTE A 241.1 evs\n",
            1,
            "type evs cannot be used for attribute number 241.1",
        );
        parsed("ATTRIBUTE Vendor-Specific 26 vsa\nATTRIBUTE E 241.26 evs\n");
    }

    #[test]
    fn error_bad_vendor_definitions() {
        assert_parse_error("VENDOR V 0\n", 1, "bad vendor number");
        assert_parse_error("VENDOR V 16777216\n", 1, "bad vendor number");
        assert_parse_error("VENDOR V 9 format=3,1\n", 1, "bad VENDOR option");
        assert_parse_error("VENDOR V 9 format=1,3\n", 1, "bad VENDOR option");
        assert_parse_error("VENDOR V 9 style=1,1\n", 1, "bad VENDOR option");
        assert_parse_error("VENDOR V 9 format=2,2,c\n", 1, "bad VENDOR option");
        parsed("VENDOR WiMAX 24757 format=1,1,c\n");
        assert_parse_error("VENDOR V 9\nVENDOR V 10\n", 2, "already defined with number 9");
        assert_parse_error("VENDOR V 9\nVENDOR W 9\n", 2, "already used by V");
        assert_parse_error("VENDOR V 9\nVENDOR V 9 format=2,2\n", 2, "different format");
    }

    #[test]
    fn error_end_vendor_mismatch() {
        assert_parse_error(
            "VENDOR A 1\nVENDOR B 2\nBEGIN-VENDOR A\nEND-VENDOR B\n",
            4,
            "does not match BEGIN-VENDOR A from line 3",
        );
        assert_parse_error("END-VENDOR A\n", 1, "without a matching BEGIN-VENDOR");
    }

    #[test]
    fn error_begin_vendor_unknown_vendor() {
        assert_parse_error("\n\nBEGIN-VENDOR Nobody\n", 3, "unknown vendor Nobody");
    }

    #[test]
    fn error_begin_vendor_nested_unclosed_or_with_options() {
        assert_parse_error(
            "VENDOR A 1\nBEGIN-VENDOR A\nBEGIN-VENDOR A\n",
            3,
            "still open BEGIN-VENDOR A from line 2",
        );
        assert_parse_error("VENDOR A 1\nBEGIN-VENDOR A\nATTRIBUTE X 1 string\n", 2, "is not closed");
        assert_parse_error(
            "VENDOR A 1\nBEGIN-VENDOR A format=Extended-Vendor-Specific-1\n",
            2,
            "not supported",
        );
    }

    // --- includes ----------------------------------------------------------------------

    #[test]
    fn include_is_relative_to_the_including_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = write(dir.path(), "top/dictionary", "$INCLUDE sub/dictionary.one\n");
        write(
            dir.path(),
            "top/sub/dictionary.one",
            "ATTRIBUTE One 1 integer\n$INCLUDE dictionary.two\n",
        );
        // Resolved against top/sub/, not against top/ or the working directory.
        write(
            dir.path(),
            "top/sub/dictionary.two",
            "VALUE One First 1\nATTRIBUTE Two 2 string\n",
        );
        let dict = Dictionary::load(&top).expect("load");
        assert_eq!(dict.len(), 2);
        assert_eq!(dict.value_name(AttrKey::Std(1), 1), Some("First"));
    }

    #[test]
    fn include_from_parse_str_uses_origin_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "dictionary.extra", "ATTRIBUTE Extra 7 string\n");
        let mut dict = Dictionary::new();
        dict.parse_str(&dir.path().join("virtual"), "$INCLUDE dictionary.extra\n")
            .expect("parse");
        assert!(dict.attr_by_name("Extra").is_some());
    }

    #[test]
    fn value_resolution_spans_included_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = write(
            dir.path(),
            "dictionary",
            "$INCLUDE dictionary.values\n$INCLUDE dictionary.attrs\n",
        );
        write(dir.path(), "dictionary.values", "VALUE Later Named 5\n");
        write(dir.path(), "dictionary.attrs", "ATTRIBUTE Later 200 integer\n");
        let dict = Dictionary::load(&top).expect("load");
        assert_eq!(dict.value_name(AttrKey::Std(200), 5), Some("Named"));
    }

    #[test]
    fn error_include_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = write(dir.path(), "dictionary", "# header\n$INCLUDE dictionary.absent\n");
        let err = Dictionary::load(&top).expect_err("missing include");
        assert!(matches!(err, DictionaryError::Include { line: 2, .. }), "{err:?}");
        assert_eq!(err.path(), top.as_path());
        let shown = err.to_string();
        assert!(shown.contains(":2: cannot read $INCLUDE file"), "{shown}");
        assert!(shown.contains("dictionary.absent"), "{shown}");
    }

    #[test]
    fn optional_include_of_missing_file_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = write(
            dir.path(),
            "dictionary",
            "$INCLUDE- dictionary.local\nATTRIBUTE A 1 string\n",
        );
        assert_eq!(Dictionary::load(&top).expect("load").len(), 1);
    }

    #[test]
    fn error_include_depth() {
        let dir = tempfile::tempdir().expect("tempdir");
        // d0 includes d1 ... d9: nine levels of nesting below the top file.
        for i in 0..10 {
            write(dir.path(), &format!("d{i}"), &format!("\n$INCLUDE d{}\n", i + 1));
        }
        write(dir.path(), "d10", "ATTRIBUTE A 1 string\n");
        let err = Dictionary::load(&dir.path().join("d0")).expect_err("too deep");
        match &err {
            DictionaryError::IncludeDepth { path, line, target } => {
                assert_eq!(path, &dir.path().join("d8"));
                assert_eq!(*line, 2);
                assert_eq!(target, &dir.path().join("d9"));
            }
            other => panic!("expected IncludeDepth, got {other:?}"),
        }
        assert!(err.to_string().contains("deeper than 8"), "{err}");

        // Exactly MAX_INCLUDE_DEPTH levels is still fine.
        write(dir.path(), "d8", "ATTRIBUTE A 1 string\n");
        assert_eq!(Dictionary::load(&dir.path().join("d0")).expect("8 levels").len(), 1);
    }

    #[test]
    fn error_include_loop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(dir.path(), "a", "$INCLUDE b\n");
        let b = write(dir.path(), "b", "ATTRIBUTE B 2 string\n\n$INCLUDE ./sub/../a\n");
        fs::create_dir_all(dir.path().join("sub")).expect("mkdir");
        let err = Dictionary::load(&a).expect_err("loop");
        assert!(matches!(err, DictionaryError::IncludeLoop { line: 3, .. }), "{err:?}");
        assert_eq!(err.path(), b.as_path());
        assert!(err.to_string().contains("loops back"), "{err}");

        let selfish = write(dir.path(), "self", "$INCLUDE self\n");
        let err = Dictionary::load(&selfish).expect_err("self loop");
        assert!(matches!(err, DictionaryError::IncludeLoop { line: 1, .. }), "{err:?}");
    }

    #[test]
    fn errors_in_included_files_name_that_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = write(dir.path(), "dictionary", "$INCLUDE dictionary.bad\n");
        let bad = write(
            dir.path(),
            "dictionary.bad",
            "ATTRIBUTE Fine 1 string\nVALUE Nowhere X 1\n",
        );
        let err = Dictionary::load(&top).expect_err("bad value");
        assert_eq!(err.path(), bad.as_path());
        assert_eq!(err.line(), Some(2));
        assert!(err.to_string().starts_with(&format!("{}:2: ", bad.display())));
    }

    #[test]
    fn vendor_block_does_not_leak_into_included_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = write(
            dir.path(),
            "dictionary",
            "VENDOR V 9\nBEGIN-VENDOR V\n$INCLUDE plain\nATTRIBUTE In-Block 1 string\nEND-VENDOR V\n",
        );
        write(dir.path(), "plain", "ATTRIBUTE Plain 1 string\n");
        let dict = Dictionary::load(&top).expect("load");
        assert_eq!(dict.attr_by_name("Plain").map(|d| d.key), Some(AttrKey::Std(1)));
        assert_eq!(
            dict.attr_by_name("In-Block").map(|d| d.key),
            Some(AttrKey::Vendor { vendor: 9, typ: 1 })
        );
    }

    #[test]
    fn error_load_missing_top_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope");
        let err = Dictionary::load(&path).expect_err("missing");
        assert!(matches!(err, DictionaryError::Io { .. }), "{err:?}");
        assert_eq!(err.line(), None);
        assert!(err.to_string().contains("nope"), "{err}");
    }

    // --- format ------------------------------------------------------------------------

    #[test]
    fn format_unknown_attributes_as_hex() {
        let dict = parsed(SAMPLE);
        assert_eq!(dict.format(AttrKey::Std(200), &[1, 2]), "Attr-200 = 0x0102");
        assert_eq!(
            dict.format(AttrKey::Vendor { vendor: 311, typ: 99 }, &[1, 2]),
            "Attr-26.311.99 = 0x0102"
        );
        assert_eq!(
            dict.format(AttrKey::Extended { parent: 241, ext: 9 }, &[0xab]),
            "Attr-241.9 = 0xab"
        );
        assert_eq!(Dictionary::new().format(AttrKey::Std(1), &[]), "Attr-1 = 0x");
    }

    #[test]
    fn format_integers_with_and_without_names() {
        let dict = parsed(SAMPLE);
        assert_eq!(
            dict.format(AttrKey::Std(6), &[0, 0, 0, 2]),
            "Service-Type = Framed-User"
        );
        assert_eq!(dict.format(AttrKey::Std(6), &[0, 0, 1, 0]), "Service-Type = 256");
        assert_eq!(dict.format(AttrKey::Std(6), &[0, 0, 2]), "Service-Type = 0x000002");
        assert_eq!(dict.format(AttrKey::Std(6), &[]), "Service-Type = 0x");
        assert_eq!(dict.format(AttrKey::Std(152), &[7]), "Some-Byte = Small");
        assert_eq!(dict.format(AttrKey::Std(152), &[8]), "Some-Byte = 8");
        assert_eq!(dict.format(AttrKey::Std(153), &[1, 44]), "Some-Short = Medium");
        assert_eq!(
            dict.format(AttrKey::Std(154), &[0, 0, 0, 1, 0, 0, 0, 0]),
            "Some-Counter = 4294967296"
        );
        assert_eq!(
            dict.format(AttrKey::Std(155), &[0xff, 0xff, 0xff, 0xfe]),
            "Some-Signed = -2"
        );
        assert_eq!(
            dict.format(AttrKey::Extended { parent: 241, ext: 1 }, &[0, 0, 0, 3]),
            "Frag-Status = 3"
        );
    }

    #[test]
    fn format_vendor_attributes() {
        let dict = parsed(SAMPLE);
        let policy = AttrKey::Vendor { vendor: 311, typ: 7 };
        assert_eq!(
            dict.format(policy, &[0, 0, 0, 2]),
            "MS-MPPE-Encryption-Policy = Encryption-Required"
        );
        let wide = AttrKey::Vendor {
            vendor: 4242,
            typ: 1000,
        };
        assert_eq!(dict.format(wide, b"hi"), "Wide-Thing = \"hi\"");
    }

    #[test]
    fn format_encrypted_attributes_as_hex() {
        let dict = parsed(SAMPLE);
        let send_key = AttrKey::Vendor { vendor: 311, typ: 16 };
        assert_eq!(
            dict.format(send_key, &[0x80, 0x01, 0x41]),
            "MS-MPPE-Send-Key = 0x800141"
        );
        // The tag stays readable; the salted ciphertext after it does not pretend to be text.
        assert_eq!(
            dict.format(AttrKey::Std(69), &[1, 0x80, 0x41]),
            "Tunnel-Password:1 = 0x8041"
        );
    }

    #[test]
    fn format_tagged_integers() {
        let dict = parsed(SAMPLE);
        assert_eq!(dict.format(AttrKey::Std(64), &[1, 0, 0, 13]), "Tunnel-Type:1 = VLAN");
        assert_eq!(dict.format(AttrKey::Std(64), &[0x1f, 0, 0, 3]), "Tunnel-Type:31 = 3");
        // A zero first octet is simply the top of an untagged 32-bit value.
        assert_eq!(dict.format(AttrKey::Std(64), &[0, 0, 0, 13]), "Tunnel-Type = VLAN");
        // Above 0x1F it cannot be a tag, so the whole 32 bits are the value.
        assert_eq!(
            dict.format(AttrKey::Std(64), &[0x20, 0, 0, 13]),
            "Tunnel-Type = 536870925"
        );
        assert_eq!(dict.format(AttrKey::Std(64), &[1, 0, 13]), "Tunnel-Type = 0x01000d");
        assert_eq!(dict.format(AttrKey::Std(64), &[]), "Tunnel-Type = 0x");
    }

    #[test]
    fn format_tagged_strings() {
        let dict = parsed(SAMPLE);
        let group = AttrKey::Std(81);
        assert_eq!(dict.format(group, b"\x01100"), "Tunnel-Private-Group-Id:1 = \"100\"");
        assert_eq!(dict.format(group, b"\x00100"), "Tunnel-Private-Group-Id = \"100\"");
        assert_eq!(dict.format(group, b"100"), "Tunnel-Private-Group-Id = \"100\"");
        assert_eq!(dict.format(group, b"\x05"), "Tunnel-Private-Group-Id:5 = \"\"");
        assert_eq!(dict.format(group, b""), "Tunnel-Private-Group-Id = \"\"");
    }

    #[test]
    fn format_addresses() {
        let dict = parsed(SAMPLE);
        assert_eq!(
            dict.format(AttrKey::Std(4), &[192, 0, 2, 1]),
            "NAS-IP-Address = 192.0.2.1"
        );
        assert_eq!(dict.format(AttrKey::Std(4), &[192, 0, 2]), "NAS-IP-Address = 0xc00002");
        let mut v6 = [0u8; 16];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[2] = 0x0d;
        v6[3] = 0xb8;
        v6[15] = 1;
        assert_eq!(dict.format(AttrKey::Std(95), &v6), "NAS-IPv6-Address = 2001:db8::1");
        assert_eq!(
            dict.format(AttrKey::Std(95), &v6[..15]).len(),
            "NAS-IPv6-Address = 0x".len() + 30
        );
        assert_eq!(
            dict.format(AttrKey::Std(97), &[0, 64, 0x20, 0x01, 0x0d, 0xb8]),
            "Framed-IPv6-Prefix = 2001:db8::/64"
        );
        assert_eq!(dict.format(AttrKey::Std(97), &[0, 0]), "Framed-IPv6-Prefix = ::/0");
        assert_eq!(dict.format(AttrKey::Std(97), &[0, 129]), "Framed-IPv6-Prefix = 0x0081");
        assert_eq!(dict.format(AttrKey::Std(97), &[0]), "Framed-IPv6-Prefix = 0x00");
        assert_eq!(
            dict.format(AttrKey::Std(150), &[0, 24, 10, 1, 2, 0]),
            "Framed-IPv4-Prefix = 10.1.2.0/24"
        );
        assert_eq!(
            dict.format(AttrKey::Std(150), &[0, 33, 10, 1, 2, 0]),
            "Framed-IPv4-Prefix = 0x00210a010200"
        );
        assert_eq!(
            dict.format(AttrKey::Std(96), &[0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55]),
            "Framed-Interface-Id = 0211:22ff:fe33:4455"
        );
        assert_eq!(
            dict.format(AttrKey::Std(151), &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]),
            "Chaddr = aa:bb:cc:dd:ee:ff"
        );
        assert_eq!(dict.format(AttrKey::Std(157), &[10, 0, 0, 1]), "Some-Combo = 10.0.0.1");
        assert_eq!(dict.format(AttrKey::Std(157), &v6), "Some-Combo = 2001:db8::1");
        assert_eq!(dict.format(AttrKey::Std(157), &[1, 2]), "Some-Combo = 0x0102");
    }

    #[test]
    fn format_arrays() {
        let dict = parsed(SAMPLE);
        assert_eq!(
            dict.format(AttrKey::Std(156), &[10, 0, 0, 1, 10, 0, 0, 2]),
            "Some-Addrs = 10.0.0.1, 10.0.0.2"
        );
        assert_eq!(dict.format(AttrKey::Std(156), &[10, 0, 0, 1]), "Some-Addrs = 10.0.0.1");
        assert_eq!(
            dict.format(AttrKey::Std(156), &[10, 0, 0, 1, 9]),
            "Some-Addrs = 0x0a00000109"
        );
    }

    #[test]
    fn format_date_and_octets() {
        let dict = parsed(SAMPLE);
        assert_eq!(
            dict.format(AttrKey::Std(55), &[0x65, 0x53, 0xf1, 0x00]),
            "Event-Timestamp = 1700000000"
        );
        assert_eq!(dict.format(AttrKey::Std(24), &[0xde, 0xad]), "State = 0xdead");
        assert_eq!(dict.format(AttrKey::Std(24), &[]), "State = 0x");
        assert_eq!(dict.format(AttrKey::Std(79), &[2, 1]), "EAP-Message = 0x0201");
        assert_eq!(dict.format(AttrKey::Std(241), &[1, 0]), "Extended-Attribute-1 = 0x0100");
    }

    #[test]
    fn format_strings_escape_unsafe_bytes() {
        let dict = parsed(SAMPLE);
        let user = AttrKey::Std(1);
        assert_eq!(
            dict.format(user, b"alice@example.com"),
            "User-Name = \"alice@example.com\""
        );
        assert_eq!(
            dict.format(user, "jürgen 名前".as_bytes()),
            "User-Name = \"jürgen 名前\""
        );
        assert_eq!(dict.format(user, b"a\nb\x1b[31m"), "User-Name = \"a\\x0ab\\x1b[31m\"");
        assert_eq!(
            dict.format(user, b"\xff\xfeok\xc3"),
            "User-Name = \"\\xff\\xfeok\\xc3\""
        );
        assert_eq!(
            dict.format(user, b"say \"hi\" \\o/"),
            "User-Name = \"say \\\"hi\\\" \\\\o/\""
        );
        assert_eq!(dict.format(user, b"\0"), "User-Name = \"\\x00\"");
        assert_eq!(dict.format(user, b""), "User-Name = \"\"");
        // Bidi override could visually reorder a log line; C1 controls are controls too.
        assert_eq!(
            dict.format(user, "a\u{202e}b\u{85}".as_bytes()),
            "User-Name = \"a\\xe2\\x80\\xaeb\\xc2\\x85\""
        );
    }

    #[test]
    fn format_never_panics() {
        let mut text = String::from(SAMPLE);
        // One tagged and one untagged attribute of every type, so every render path is hit.
        for (i, ty) in DataType::ALL.into_iter().enumerate() {
            let number = 160 + i;
            // Container types are only legal on their fixed numbers, which SAMPLE already has.
            if matches!(
                ty,
                DataType::Vsa | DataType::Extended | DataType::LongExtended | DataType::Evs
            ) {
                continue;
            }
            text.push_str(&format!("ATTRIBUTE T-{i} {number} {ty}\n"));
        }
        let dict = parsed(&text);
        let mut keys: Vec<AttrKey> = dict.attrs().map(|d| d.key).collect();
        keys.push(AttrKey::Std(250));
        keys.push(AttrKey::Vendor { vendor: 1, typ: 1 });
        let mut seed = 0x2545_f491_u32;
        for key in keys {
            for len in 0..=20 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        seed.to_be_bytes()[0]
                    })
                    .collect();
                let shown = dict.format(key, &bytes);
                assert!(shown.contains(" = "), "{shown}");
                let tagged: Vec<u8> = std::iter::once(1).chain(bytes.iter().copied()).collect();
                dict.format(key, &tagged);
            }
        }
    }

    // --- the shipped dictionaries ------------------------------------------------------

    fn shipped() -> Dictionary {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dictionaries/dictionary");
        match Dictionary::load(&path) {
            Ok(dict) => dict,
            Err(e) => panic!("shipped dictionary failed to load: {e}"),
        }
    }

    fn key_of(dict: &Dictionary, name: &str) -> AttrKey {
        dict.attr_by_name(name).unwrap_or_else(|| panic!("{name} missing")).key
    }

    #[test]
    fn shipped_dictionary_has_well_known_entries() {
        let dict = shipped();
        assert!(dict.len() >= 140, "only {} attributes", dict.len());

        let user = dict.attr(AttrKey::Std(1)).expect("User-Name");
        assert_eq!((user.name.as_str(), user.ty), ("User-Name", DataType::String));
        assert_eq!(dict.attr(AttrKey::Std(2)).map(|d| d.encrypt), Some(1));

        let msg_auth = dict
            .attr_by_name("Message-Authenticator")
            .expect("Message-Authenticator");
        assert_eq!((msg_auth.key, msg_auth.ty), (AttrKey::Std(80), DataType::Octets));
        assert!(dict.attr_by_name("EAP-Message").expect("EAP-Message").concat);

        let tunnel_type = dict.attr_by_name("Tunnel-Type").expect("Tunnel-Type");
        assert_eq!(tunnel_type.key, AttrKey::Std(64));
        assert!(tunnel_type.has_tag);
        assert_eq!(dict.value_name(AttrKey::Std(64), 13), Some("VLAN"));
        assert_eq!(dict.value_name(AttrKey::Std(65), 6), Some("IEEE-802"));
        let tunnel_password = dict.attr_by_name("Tunnel-Password").expect("Tunnel-Password");
        assert_eq!((tunnel_password.key, tunnel_password.encrypt), (AttrKey::Std(69), 2));
        assert!(tunnel_password.has_tag);
        assert_eq!(key_of(&dict, "Tunnel-Private-Group-Id"), AttrKey::Std(81));
        assert_eq!(dict.format(AttrKey::Std(64), &[1, 0, 0, 13]), "Tunnel-Type:1 = VLAN");

        let send_key = dict.attr_by_name("MS-MPPE-Send-Key").expect("MS-MPPE-Send-Key");
        assert_eq!(send_key.key, AttrKey::Vendor { vendor: 311, typ: 16 });
        assert_eq!(send_key.encrypt, 2);
        assert_eq!(
            key_of(&dict, "MS-MPPE-Recv-Key"),
            AttrKey::Vendor { vendor: 311, typ: 17 }
        );
        assert_eq!(
            key_of(&dict, "MS-CHAP2-Success"),
            AttrKey::Vendor { vendor: 311, typ: 26 }
        );
        assert_eq!(dict.vendor_id("Microsoft"), Some(311));

        let avpair = dict.attr_by_name("Cisco-AVPair").expect("Cisco-AVPair");
        assert_eq!(
            (avpair.key, avpair.ty),
            (AttrKey::Vendor { vendor: 9, typ: 1 }, DataType::String)
        );
        assert_eq!(dict.vendor_name(9), Some("Cisco"));

        let error_cause = key_of(&dict, "Error-Cause");
        assert_eq!(error_cause, AttrKey::Std(101));
        assert_eq!(
            dict.value_name(error_cause, 201),
            Some("Residual-Session-Context-Removed")
        );
        assert_eq!(dict.value_name(error_cause, 503), Some("Session-Context-Not-Found"));
        assert_eq!(
            dict.value_name(error_cause, 508),
            Some("Multiple-Session-Selection-Unsupported")
        );

        assert_eq!(dict.value_name(AttrKey::Std(40), 3), Some("Interim-Update"));
        assert_eq!(dict.value_name(AttrKey::Std(40), 8), Some("Accounting-Off"));
        assert_eq!(dict.value_name(AttrKey::Std(49), 18), Some("Host-Request"));
        assert_eq!(
            dict.value_name(AttrKey::Std(49), 22),
            Some("Port-Administratively-Disabled")
        );

        let ext1 = dict.attr_by_name("Extended-Attribute-1").expect("Extended-Attribute-1");
        assert_eq!((ext1.key, ext1.ty), (AttrKey::Std(241), DataType::Extended));
        assert_eq!(dict.attr(AttrKey::Std(246)).map(|d| d.ty), Some(DataType::LongExtended));
        assert_eq!(key_of(&dict, "Frag-Status"), AttrKey::Extended { parent: 241, ext: 1 });

        assert_eq!(dict.value_name(AttrKey::Std(61), 19), Some("Wireless-802.11"));
        assert_eq!(dict.value_name(AttrKey::Std(61), 15), Some("Ethernet"));
        assert_eq!(dict.value_name(AttrKey::Std(6), 17), Some("Authorize-Only"));
        assert_eq!(dict.attr(AttrKey::Std(55)).map(|d| d.ty), Some(DataType::Date));
        assert_eq!(dict.attr(AttrKey::Std(96)).map(|d| d.ty), Some(DataType::IfId));
        assert_eq!(dict.attr(AttrKey::Std(97)).map(|d| d.ty), Some(DataType::Ipv6Prefix));
        assert_eq!(key_of(&dict, "NAS-Port-Id"), AttrKey::Std(87));
        assert_eq!(key_of(&dict, "Acct-Interim-Interval"), AttrKey::Std(85));
    }

    #[test]
    fn shipped_dictionary_covers_rfc2865_attribute_range() {
        let dict = shipped();
        for n in (1..=39).chain(60..=63) {
            // 17 and 21 were never assigned by RFC 2865.
            if n == 17 || n == 21 {
                assert!(dict.attr(AttrKey::Std(n)).is_none());
            } else {
                assert!(dict.attr(AttrKey::Std(n)).is_some(), "attribute {n} missing");
            }
        }
        for n in 40..=53 {
            assert!(dict.attr(AttrKey::Std(n)).is_some(), "attribute {n} missing");
        }
    }
}
