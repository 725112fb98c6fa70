//! The tree a `.pth` file unpickles into. Python objects map onto a few plain variants; classes this
//! reader does not know stay readable as [`Object`]s instead of failing the whole file, because a
//! checkpoint is mostly tensors with some incidental Python (argparse namespaces, numpy scalars).
use tch::Tensor;

/// One unpickled Python value.
#[derive(Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit 64 bits, as Python's little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// A dict or `collections.OrderedDict`, in file order (keys need not be strings).
    Dict(Vec<(Value, Value)>),
    /// A tensor on the CPU, sharing memory with other views of the same storage as in Python.
    Tensor(Tensor),
    /// A class or function referred to by name and not called, e.g. `torch.float32`.
    Global {
        module: String,
        name: String,
    },
    /// An instance of a class this reader does not rebuild.
    Object(Box<Object>),
}

/// An instance of a class this reader does not know, kept as the pieces the pickle built it from.
#[derive(Debug)]
pub struct Object {
    pub module: String,
    pub name: String,
    /// The arguments its class (or reduce function) was called with.
    pub args: Vec<Value>,
    /// What `__setstate__` would get: for plain classes (`argparse.Namespace`) the attribute dict;
    /// `Value::None` when the pickle set none.
    pub state: Value,
    /// Items appended to it (list subclasses, sets).
    pub items: Vec<Value>,
    /// Entries set on it (dict subclasses).
    pub entries: Vec<(Value, Value)>,
}

impl Clone for Value {
    /// Tensors are cloned shallowly, so clones share storage like Python references do.
    fn clone(&self) -> Self {
        match self {
            Value::None => Value::None,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::BigInt(b) => Value::BigInt(b.clone()),
            Value::Float(f) => Value::Float(*f),
            Value::Str(s) => Value::Str(s.clone()),
            Value::Bytes(b) => Value::Bytes(b.clone()),
            Value::List(v) => Value::List(v.clone()),
            Value::Tuple(v) => Value::Tuple(v.clone()),
            Value::Dict(d) => Value::Dict(d.clone()),
            Value::Tensor(t) => Value::Tensor(t.shallow_clone()),
            Value::Global { module, name } => Value::Global { module: module.clone(), name: name.clone() },
            Value::Object(o) => Value::Object(o.clone()),
        }
    }
}

impl Clone for Object {
    fn clone(&self) -> Self {
        Object {
            module: self.module.clone(),
            name: self.name.clone(),
            args: self.args.clone(),
            state: self.state.clone(),
            items: self.items.clone(),
            entries: self.entries.clone(),
        }
    }
}

impl Value {
    /// The value under a string key: a dict's entry, or an object's attribute (its state dict) or
    /// entry. `None` for other values and missing keys.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => lookup(pairs, key),
            Value::Object(o) => o.attributes().and_then(|a| lookup(a, key)).or_else(|| lookup(&o.entries, key)),
            _ => None,
        }
    }

    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Floats, and ints as floats, since Python code mixes them freely (`lr=1` vs `lr=1.0`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of a list or tuple.
    pub fn as_slice(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// The entries of a dict.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
}

impl Object {
    /// The attribute dict, whether the state is a plain dict or the `(dict, slots)` pair that
    /// classes with `__slots__` pickle.
    pub fn attributes(&self) -> Option<&[(Value, Value)]> {
        match &self.state {
            Value::Dict(d) => Some(d),
            Value::Tuple(t) => t.first().and_then(Value::as_dict),
            _ => None,
        }
    }
}

fn lookup<'a>(pairs: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    pairs.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}
