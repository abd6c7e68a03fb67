//! What the pickle machine builds, and what PyTorch's calls in a checkpoint mean: `OrderedDict()`, the storage
//! persistent ids, `_rebuild_tensor[_v2]`, `_rebuild_parameter` and `_rebuild_from_type_v2`, and protocol 2's
//! `_codecs.encode` for bytes. Any other class becomes an opaque object (an error only where a tensor is
//! expected).

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::DType;

/// A storage reference from a persistent id `('storage', <dtype>Storage, key, location, numel[, view])`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    /// Element type (a `BoolStorage` is read as `u8`).
    pub dtype: DType,
    /// The root storage's key (its record in the file).
    pub key: String,
    /// Elements in the root storage `key`.
    pub root_numel: usize,
    /// For an old-style storage view `(view_key, offset, size)`: its offset (elements) into the root storage.
    pub view_offset: usize,
    /// Elements visible through this reference (the view's size, or the root's).
    pub numel: usize,
}

/// `_rebuild_tensor[_v2](storage, storage_offset, size, stride, …)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

pub(crate) type Dict = Rc<RefCell<Vec<(Value, Value)>>>;

#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as its little-endian two's-complement bytes (e.g. PyTorch's magic number).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Dict),
    Global(Rc<(String, String)>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// Any other constructed object (`REDUCE`/`NEWOBJ` of a class we do not model); kept opaque.
    Object(Rc<(String, String)>),
}

impl Value {
    /// A short description for error messages (`float 0.5`, `object torch.device`, `dict of 3`).
    pub(crate) fn describe(&self) -> String {
        match self {
            Value::Int(i) => format!("int {i}"),
            Value::Float(x) => format!("float {x}"),
            Value::Str(s) => format!("str {s:?}"),
            Value::Bytes(b) => format!("bytes ({} bytes)", b.len()),
            Value::List(l) => format!("list of {}", l.borrow().len()),
            Value::Dict(d) => format!("dict of {}", d.borrow().len()),
            Value::Object(c) | Value::Global(c) => format!("{} {}.{}", self.kind(), c.0, c.1),
            other => other.kind().to_string(),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Object(_) => "object",
        }
    }
}

/// Why an object could not be built (the machine adds the byte offset).
pub(crate) enum ObjError {
    Malformed(String),
    UnsupportedStorage(String),
}

type OResult<T> = std::result::Result<T, ObjError>;

fn bad<T>(msg: impl Into<String>) -> OResult<T> {
    Err(ObjError::Malformed(msg.into()))
}

/// Storage class name → dtype.
fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "ByteStorage" | "BoolStorage" => DType::U8,
        _ => return None,
    })
}

fn index(v: &Value, what: &str) -> OResult<usize> {
    let i = match v {
        Value::Int(i) => *i,
        Value::Bool(b) => *b as i64,
        other => return bad(format!("{what}: expected an int, found {}", other.kind())),
    };
    usize::try_from(i).or_else(|_| bad(format!("{what}: negative value {i}")))
}

fn dims(v: &Value, what: &str) -> OResult<Vec<usize>> {
    match v {
        Value::Tuple(t) => t.iter().map(|x| index(x, what)).collect(),
        other => bad(format!("{what}: expected a tuple, found {}", other.kind())),
    }
}

fn tuple(v: Value, what: &str) -> OResult<Rc<Vec<Value>>> {
    match v {
        Value::Tuple(t) => Ok(t),
        other => bad(format!("{what}: arguments are a {}, not a tuple", other.kind())),
    }
}

/// `BINPERSID`: `('storage', <dtype>Storage, key, location, numel[, view])`.
pub(crate) fn persistent_load(pid: Value) -> OResult<Value> {
    let t = tuple(pid, "persistent id")?;
    let tag = matches!(t.first(), Some(Value::Str(s)) if s == "storage");
    if !tag || !(5..=6).contains(&t.len()) {
        return bad("persistent id is not a ('storage', type, key, location, numel[, view]) tuple");
    }
    let Value::Global(class) = &t[1] else { return bad("storage type is not a class") };
    let Some(dtype) = storage_dtype(&class.1) else {
        return Err(ObjError::UnsupportedStorage(format!("{}.{}", class.0, class.1)));
    };
    let Value::Str(key) = &t[2] else { return bad("storage key is not a string") };
    let root_numel = index(&t[4], "storage size")?;
    let (view_offset, numel) = match t.get(5) {
        None | Some(Value::None) => (0, root_numel),
        Some(Value::Tuple(v)) if v.len() == 3 => {
            let (o, n) = (index(&v[1], "view offset")?, index(&v[2], "view size")?);
            if o.checked_add(n).is_none_or(|e| e > root_numel) {
                return bad(format!("storage view {o}+{n} exceeds its storage of {root_numel}"));
            }
            (o, n)
        }
        Some(other) => return bad(format!("storage view is a {}", other.kind())),
    };
    Ok(Value::Storage(Rc::new(StorageRef { dtype, key: key.clone(), root_numel, view_offset, numel })))
}

/// `REDUCE` / `NEWOBJ`: `callable(*args)` for the callables a checkpoint uses; others stay opaque objects.
pub(crate) fn reduce(callable: Value, args: Value) -> OResult<Value> {
    let Value::Global(g) = callable else {
        return bad(format!("REDUCE of a {}", callable.kind()));
    };
    let (module, name) = (g.0.as_str(), g.1.as_str());
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            let a = tuple(args, name)?;
            if a.len() < 4 {
                return bad(format!("{name} with {} arguments", a.len()));
            }
            let Value::Storage(s) = &a[0] else { return bad(format!("{name}: first argument is not a storage")) };
            let t = TensorRef {
                storage: (**s).clone(),
                offset: index(&a[1], "storage offset")?,
                size: dims(&a[2], "size")?,
                stride: dims(&a[3], "stride")?,
            };
            if t.size.len() != t.stride.len() {
                return bad(format!("size {:?} and stride {:?} differ in rank", t.size, t.stride));
            }
            Ok(Value::Tensor(Rc::new(t)))
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => match tuple(args, name)?.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => bad(format!("{name} without a tensor")),
        },
        ("torch._tensor", "_rebuild_from_type_v2") => {
            let a = tuple(args, name)?;
            if a.len() < 3 {
                return bad(format!("{name} with {} arguments", a.len()));
            }
            reduce(a[0].clone(), a[2].clone())
        }
        ("_codecs", "encode") => match tuple(args, name)?.first() {
            // Python 3 `bytes` in protocol 2: `_codecs.encode(latin-1 text, "latin1")`.
            Some(Value::Str(s)) => Ok(Value::Bytes(s.chars().map(|c| c as u32 as u8).collect())),
            _ => bad("_codecs.encode without a string"),
        },
        _ => Ok(Value::Object(g)),
    }
}
