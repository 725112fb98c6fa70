//! Turns the unpickled structure into [`Value`]s: resolves memo refs, loads storages, rebuilds
//! tensors as strided views of them and `OrderedDict`s as dicts, and keeps every other call as an
//! [`Object`]. Done after unpickling because a call's arguments may be memoized values that the
//! pickle completes only later.
use std::collections::{HashMap, HashSet};

use tch::{Kind, Tensor};

use super::unpickle::{leaf_cost, Call, Memo, Raw, MAX_DEPTH, MAX_VALUES};
use super::value::{Object, Value};
use super::Problem;

/// torch's storage classes and the element kinds they hold; `UntypedStorage` is bytes.
pub(super) const STORAGE_KINDS: &[(&str, Kind)] = &[
    ("FloatStorage", Kind::Float),
    ("DoubleStorage", Kind::Double),
    ("HalfStorage", Kind::Half),
    ("BFloat16Storage", Kind::BFloat16),
    ("LongStorage", Kind::Int64),
    ("IntStorage", Kind::Int),
    ("ShortStorage", Kind::Int16),
    ("CharStorage", Kind::Int8),
    ("ByteStorage", Kind::Uint8),
    ("BoolStorage", Kind::Bool),
    ("ComplexFloatStorage", Kind::ComplexFloat),
    ("ComplexDoubleStorage", Kind::ComplexDouble),
    ("UntypedStorage", Kind::Uint8),
];

/// Where storages' bytes come from (the zip archive's `data/KEY` entries).
pub(super) trait Storages {
    fn bytes(&mut self, key: &str, nbytes: u64) -> Result<Vec<u8>, Problem>;
}

pub(super) fn finish(root: &Raw, memo: &Memo, storages: &mut dyn Storages) -> Result<Value, Problem> {
    let mut f = Finisher { memo, storages, done: HashMap::new(), busy: HashSet::new(), loaded: HashMap::new(), nodes: 0, deepest: 0 };
    f.value(root, 0)
}

/// A finished memo entry and what copying it costs, for the node and depth bounds.
struct Done {
    value: Value,
    nodes: u64,
    height: u32,
}

struct Finisher<'a> {
    memo: &'a Memo,
    storages: &'a mut dyn Storages,
    done: HashMap<u32, Done>,
    /// Memo entries being finished, to catch values that contain themselves.
    busy: HashSet<u32>,
    /// Storages by (key, class), so views of one storage share memory as they do in Python.
    loaded: HashMap<(String, String), Tensor>,
    nodes: u64,
    deepest: u32,
}

fn malformed(what: impl Into<String>) -> Problem {
    Problem::Malformed(what.into())
}

impl Finisher<'_> {
    fn value(&mut self, raw: &Raw, depth: u32) -> Result<Value, Problem> {
        self.count(1 + if let Raw::Leaf(v) = raw { leaf_cost(v) } else { 0 }, depth)?;
        Ok(match raw {
            Raw::Leaf(v) => v.clone(),
            Raw::List(s) => Value::List(self.values(&s.items, depth)?),
            Raw::Tuple(s) => Value::Tuple(self.values(&s.items, depth)?),
            Raw::Dict(m) => Value::Dict(self.pairs(&m.pairs, depth)?),
            Raw::Global { module, name } => Value::Global { module: module.clone(), name: name.clone() },
            Raw::Call(c) => self.call(c, depth)?,
            Raw::Persistent(pid) => {
                let pid = self.value(pid, depth + 1)?;
                Value::Tensor(self.storage(&pid)?)
            }
            Raw::Ref(i) => self.memoized(*i, depth)?,
        })
    }

    fn count(&mut self, nodes: u64, deepest: u32) -> Result<(), Problem> {
        self.nodes += nodes;
        self.deepest = self.deepest.max(deepest);
        if self.nodes > MAX_VALUES {
            return Err(malformed(format!("data.pkl expands to more than {MAX_VALUES} values (a checkpoint holds a few thousand)")));
        }
        if deepest > MAX_DEPTH {
            return Err(malformed(format!("values nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn values(&mut self, raws: &[Raw], depth: u32) -> Result<Vec<Value>, Problem> {
        raws.iter().map(|r| self.value(r, depth + 1)).collect()
    }

    fn pairs(&mut self, raws: &[(Raw, Raw)], depth: u32) -> Result<Vec<(Value, Value)>, Problem> {
        raws.iter().map(|(k, v)| Ok((self.value(k, depth + 1)?, self.value(v, depth + 1)?))).collect()
    }

    /// A memo entry, finished once and copied on later uses (tensors shallowly).
    fn memoized(&mut self, index: u32, depth: u32) -> Result<Value, Problem> {
        if let Some(done) = self.done.get(&index) {
            // Counted before the copy is made: refs that fan out must be refused before they fill
            // the memory, not after.
            let (nodes, height) = (done.nodes, done.height);
            self.count(nodes, depth + height)?;
            return Ok(self.done.get(&index).map(|d| d.value.clone()).unwrap_or(Value::None));
        }
        if !self.busy.insert(index) {
            return Err(malformed(format!("memo slot {index} contains itself; recursive structures are not supported")));
        }
        let raw = self.memo.get(&index).ok_or_else(|| malformed(format!("memo slot {index} is missing")))?;
        let (nodes_before, deepest_before) = (self.nodes, std::mem::replace(&mut self.deepest, depth));
        let value = self.value(raw, depth)?;
        let done = Done { value: value.clone(), nodes: self.nodes - nodes_before, height: self.deepest - depth };
        self.deepest = self.deepest.max(deepest_before);
        self.busy.remove(&index);
        self.done.insert(index, done);
        Ok(value)
    }

    fn call(&mut self, c: &Call, depth: u32) -> Result<Value, Problem> {
        let args = match self.value(&c.args, depth + 1)? {
            Value::Tuple(args) => args,
            other => vec![other],
        };
        let state = match &c.state {
            Some(s) => self.value(s, depth + 1)?,
            None => Value::None,
        };
        let items = self.values(&c.items, depth)?;
        let entries = self.pairs(&c.entries, depth)?;
        apply(Object { module: c.module.clone(), name: c.name.clone(), args, state, items, entries })
    }

    /// The storage a persistent id `('storage', torch.XStorage, key, location, numel)` names, as a
    /// 1-D CPU tensor whatever the location was.
    fn storage(&mut self, pid: &Value) -> Result<Tensor, Problem> {
        let parts = pid.as_slice().unwrap_or_default();
        let (class, key, numel) = match parts {
            [Value::Str(tag), Value::Global { name, .. }, key, _location, Value::Int(numel)] if tag == "storage" => {
                let key = key.as_str().map(str::to_owned).or_else(|| key.as_int().map(|k| k.to_string()));
                (name, key.ok_or_else(|| malformed("storage key is neither a string nor an int"))?, *numel)
            }
            _ => {
                let tag = parts.first().and_then(Value::as_str).unwrap_or("?");
                return Err(Problem::Unsupported(format!(
                    "persistent id of kind '{tag}', not a ('storage', class, key, location, numel) tuple"
                )));
            }
        };
        if let Some(t) = self.loaded.get(&(key.clone(), class.clone())) {
            return Ok(t.shallow_clone());
        }
        let kind = STORAGE_KINDS
            .iter()
            .find(|(n, _)| n == class)
            .map(|(_, k)| *k)
            .ok_or_else(|| Problem::Unsupported(format!("storage class torch.{class}")))?;
        let numel = u64::try_from(numel).map_err(|_| malformed(format!("storage {key} has {numel} elements")))?;
        let nbytes = numel
            .checked_mul(kind.elt_size_in_bytes() as u64)
            .ok_or_else(|| malformed(format!("storage {key} claims {numel} elements")))?;
        let bytes = self.storages.bytes(&key, nbytes)?;
        let tensor = Tensor::f_from_data_size(&bytes, &[numel as i64], kind)?;
        self.loaded.insert((key, class.clone()), tensor.shallow_clone());
        Ok(tensor)
    }
}

/// What calling a class or function would have made, for those we know.
fn apply(o: Object) -> Result<Value, Problem> {
    match (o.module.as_str(), o.name.as_str()) {
        ("collections", "OrderedDict") | ("builtins", "dict") => Ok(ordered_dict(o)),
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2" | "_rebuild_tensor_v3") => rebuild_tensor(&o.args).map(Value::Tensor),
        // Parameters load as their data: requires_grad and hooks are training state, not weights.
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => match o.args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => Err(malformed("_rebuild_parameter without a tensor")),
        },
        ("torch._tensor", "_rebuild_from_type_v2") => rebuild_from_type(o),
        ("copyreg", "_reconstructor") => Ok(reconstructed(o)),
        ("_codecs", "encode") => Ok(latin1_bytes(o)),
        _ => Ok(Value::Object(Box::new(o))),
    }
}

/// `OrderedDict()` then SETITEMS; its `_metadata` attribute (module versions) is dropped, as it is
/// bookkeeping for `load_state_dict`, not data.
fn ordered_dict(o: Object) -> Value {
    let mut pairs = Vec::new();
    if let Some(Value::List(init)) = o.args.into_iter().next() {
        for item in init {
            if let Value::Tuple(kv) = item {
                let mut kv = kv.into_iter();
                if let (Some(k), Some(v), None) = (kv.next(), kv.next(), kv.next()) {
                    pairs.push((k, v));
                }
            }
        }
    }
    pairs.extend(o.entries);
    Value::Dict(pairs)
}

/// Protocol 2 has no bytes type for Python 3, so pickle writes `bytes` as
/// `_codecs.encode(text, "latin1")`, each character one byte.
fn latin1_bytes(o: Object) -> Value {
    match o.args.as_slice() {
        [Value::Str(text), Value::Str(codec)]
            if matches!(codec.as_str(), "latin1" | "latin-1") && text.chars().all(|c| u32::from(c) < 256) =>
        {
            Value::Bytes(text.chars().map(|c| u32::from(c) as u8).collect())
        }
        _ => Value::Object(Box::new(o)),
    }
}

/// `_rebuild_from_type_v2(func, type, args, state)`: a tensor subclass, loaded as the plain tensor
/// `func(*args)` makes.
fn rebuild_from_type(o: Object) -> Result<Value, Problem> {
    let mut args = o.args.into_iter();
    match (args.next(), args.next(), args.next()) {
        (Some(Value::Global { module, name }), Some(_), Some(Value::Tuple(inner))) => {
            apply(Object { module, name, args: inner, state: Value::None, items: Vec::new(), entries: Vec::new() })
        }
        _ => Err(malformed("_rebuild_from_type_v2 without (function, type, args)")),
    }
}

/// Protocol 0/1's `copyreg._reconstructor(cls, base, state)`: an instance of `cls`.
fn reconstructed(mut o: Object) -> Value {
    if let Some(Value::Global { module, name }) = o.args.first() {
        (o.module, o.name) = (module.clone(), name.clone());
        o.args.remove(0);
    }
    Value::Object(Box::new(o))
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`: a strided view of the storage.
fn rebuild_tensor(args: &[Value]) -> Result<Tensor, Problem> {
    let (storage, offset, size, stride) = match args {
        [Value::Tensor(s), Value::Int(o), size, stride, ..] => (s, *o, int_list(size)?, int_list(stride)?),
        _ => return Err(malformed("_rebuild_tensor without (storage, offset, size, stride)")),
    };
    check_view(storage.numel() as i64, offset, &size, &stride).map_err(|e| malformed(format!("tensor of size {size:?}: {e}")))?;
    Ok(storage.f_as_strided(&size, &stride, offset)?)
}

fn int_list(v: &Value) -> Result<Vec<i64>, Problem> {
    let items = v.as_slice().ok_or_else(|| malformed("tensor size or stride is not a tuple"))?;
    items.iter().map(|i| i.as_int().ok_or_else(|| malformed("tensor size or stride holds a non-integer"))).collect()
}

/// Refuses views that reach outside their storage, which libtorch would read out of bounds.
fn check_view(storage_numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Result<(), String> {
    if size.len() != stride.len() {
        return Err(format!("{} sizes but {} strides", size.len(), stride.len()));
    }
    if offset < 0 || size.iter().chain(stride).any(|&x| x < 0) {
        return Err("negative offset, size or stride".into());
    }
    if size.contains(&0) {
        return Ok(());
    }
    let mut last = offset;
    for (&n, &s) in size.iter().zip(stride) {
        last = (n - 1).checked_mul(s).and_then(|d| last.checked_add(d)).ok_or("size times stride overflows")?;
    }
    if last >= storage_numel {
        return Err(format!("reaches element {last} of a storage of {storage_numel}"));
    }
    Ok(())
}
