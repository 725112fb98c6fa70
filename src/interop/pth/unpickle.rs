//! A small unpickler for the pickle opcodes `torch.save` emits (protocols 2 to 5), so checkpoints
//! load without Python. It only builds structure: calls (tensor rebuilds, `OrderedDict`, unknown
//! classes) and persistent ids (storages) are recorded here and interpreted by `rebuild`, once every
//! value they refer to is complete.
//!
//! Python mutates containers after memoizing them (`EMPTY_DICT`, `BINPUT`, then `SETITEMS`), so the
//! memo owns each memoized value and the stack keeps a [`Raw::Ref`] to it; mutations follow refs.
use std::collections::HashMap;

use super::value::Value;
use super::Problem;

/// Deeper nesting than any real checkpoint; a bound keeps recursion (here and when dropping) safe.
pub(super) const MAX_DEPTH: u32 = 200;
/// The most values one pickle may build, in units of a small value (a string or bytes costs one
/// more per 64 bytes): about 256 MB of values plus their containers. A DINO checkpoint builds a few
/// thousand; refs or DUPs that fan out into copies (a "billion laughs") reach this long before
/// the machine's memory, and are refused as they are counted, not after.
pub(super) const MAX_VALUES: u64 = 4_000_000;
/// How many `BINPUT`s of a ref may chain before we call it a loop.
const MAX_CHAIN: usize = 64;

pub(super) type Memo = HashMap<u32, Raw>;

/// A value under construction.
#[derive(Clone, Debug)]
pub(super) enum Raw {
    /// A finished value without children.
    Leaf(Value),
    List(Seq),
    Tuple(Seq),
    Dict(Map),
    Global {
        module: String,
        name: String,
    },
    /// A class or function applied to arguments (REDUCE, NEWOBJ), with what was added to it after.
    Call(Box<Call>),
    /// A persistent id; torch uses them for storages.
    Persistent(Box<Raw>),
    /// The memo entry with this index.
    Ref(u32),
}

#[derive(Clone, Debug, Default)]
pub(super) struct Seq {
    pub items: Vec<Raw>,
    pub depth: u32,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Map {
    pub pairs: Vec<(Raw, Raw)>,
    pub depth: u32,
}

#[derive(Clone, Debug)]
pub(super) struct Call {
    pub module: String,
    pub name: String,
    pub args: Raw,
    pub state: Option<Raw>,
    pub items: Vec<Raw>,
    pub entries: Vec<(Raw, Raw)>,
    pub depth: u32,
}

impl Raw {
    fn depth(&self) -> u32 {
        match self {
            Raw::Leaf(_) | Raw::Global { .. } | Raw::Ref(_) => 0,
            Raw::List(s) | Raw::Tuple(s) => s.depth,
            Raw::Dict(m) => m.depth,
            Raw::Call(c) => c.depth,
            Raw::Persistent(p) => p.depth() + 1,
        }
    }

    /// A short name for error messages (a value's own dump could be huge).
    fn what(&self) -> &'static str {
        match self {
            Raw::Leaf(_) => "a scalar",
            Raw::List(_) => "a list",
            Raw::Tuple(_) => "a tuple",
            Raw::Dict(_) => "a dict",
            Raw::Global { .. } => "a class or function",
            Raw::Call(_) => "an object",
            Raw::Persistent(_) => "a persistent id",
            Raw::Ref(_) => "a memo ref",
        }
    }

    /// What a deep copy of this costs, in the units of [`MAX_VALUES`] (memo refs are not followed:
    /// copying a ref copies no value).
    fn cost(&self) -> u64 {
        1 + match self {
            Raw::Leaf(v) => leaf_cost(v),
            Raw::Global { .. } | Raw::Ref(_) => 0,
            Raw::List(s) | Raw::Tuple(s) => s.items.iter().map(Raw::cost).sum(),
            Raw::Dict(m) => m.pairs.iter().map(|(k, v)| k.cost() + v.cost()).sum(),
            Raw::Call(c) => {
                let pairs: u64 = c.entries.iter().map(|(k, v)| k.cost() + v.cost()).sum();
                c.args.cost() + c.state.as_ref().map_or(0, Raw::cost) + c.items.iter().map(Raw::cost).sum::<u64>() + pairs
            }
            Raw::Persistent(p) => p.cost(),
        }
    }

    fn tuple(items: Vec<Raw>) -> Result<Raw, String> {
        let depth = child_depth(items.iter())?;
        Ok(Raw::Tuple(Seq { items, depth }))
    }

    fn call(module: String, name: String, args: Raw) -> Result<Raw, String> {
        let depth = child_depth(std::iter::once(&args))?;
        Ok(Raw::Call(Box::new(Call { module, name, args, state: None, items: Vec::new(), entries: Vec::new(), depth })))
    }
}

/// What a scalar costs beyond its own unit: one more per 64 bytes of text or bytes.
pub(super) fn leaf_cost(v: &Value) -> u64 {
    match v {
        Value::Str(s) => s.len() as u64 / 64,
        Value::Bytes(b) | Value::BigInt(b) => b.len() as u64 / 64,
        _ => 0,
    }
}

/// The depth of a container holding these children, refusing absurd nesting.
fn child_depth<'a>(children: impl Iterator<Item = &'a Raw>) -> Result<u32, String> {
    let depth = children.map(|c| c.depth() + 1).max().unwrap_or(1);
    if depth > MAX_DEPTH {
        return Err(format!("values nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(depth)
}

/// Unpickles `data` into its root value and the memo its refs point into.
pub(super) fn unpickle(data: &[u8]) -> Result<(Raw, Memo), Problem> {
    let mut m = Machine { cur: Cursor { data, pos: 0 }, stack: Vec::new(), marks: Vec::new(), memo: Memo::new(), copied: 0 };
    loop {
        let at = m.cur.pos;
        let op = m.cur.u8().map_err(|_| Problem::Malformed("data.pkl ends without a STOP opcode".into()))?;
        if op == b'.' {
            let root = m.pop().map_err(|e| Problem::Malformed(format!("data.pkl at byte {at} (STOP): {e}")))?;
            return Ok((root, m.memo));
        }
        m.step(op).map_err(|e| Problem::Malformed(format!("data.pkl at byte {at} (opcode 0x{op:02x}): {e}")))?;
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The next `n` bytes; lengths come from the file, so they are checked before anything is
    /// allocated for them.
    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let left = self.data.len() - self.pos;
        if n > left as u64 {
            return Err(format!("needs {n} bytes but only {left} are left"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A text line without its newline (GLOBAL's operands).
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("line without a newline")?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(line)
    }
}

struct Machine<'a> {
    cur: Cursor<'a>,
    stack: Vec<Raw>,
    /// Stack heights at each MARK (Python 3 keeps marks off the stack too).
    marks: Vec<usize>,
    memo: Memo,
    /// Values DUP copied so far, against [`MAX_VALUES`].
    copied: u64,
}

impl Machine<'_> {
    fn step(&mut self, op: u8) -> Result<(), String> {
        match op {
            0x80 => drop(self.cur.u8()?),    // PROTO: every protocol's opcodes parse alike
            0x95 => drop(self.cur.take(8)?), // FRAME: only groups opcodes for buffered reading
            b'(' => self.marks.push(self.stack.len()),
            b'0' => drop(self.pop()?),
            b'1' => drop(self.pop_mark()?),
            b'2' => {
                let top = self.stack.last().ok_or("DUP on an empty stack")?;
                // A deep copy: DUP after DUP doubles, so the copies are counted before they are made.
                self.copied += top.cost();
                if self.copied > MAX_VALUES {
                    return Err(format!("DUPs copy more than {MAX_VALUES} values"));
                }
                let top = top.clone();
                self.stack.push(top);
            }
            b'}' => self.stack.push(Raw::Dict(Map::default())),
            b']' => self.stack.push(Raw::List(Seq::default())),
            b')' => self.stack.push(Raw::Tuple(Seq::default())),
            0x8f => self.stack.push(Raw::call("builtins".into(), "set".into(), Raw::tuple(Vec::new())?)?),
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Raw::tuple(items)?);
            }
            0x85..=0x87 => self.tuple_n(usize::from(op - 0x84))?,
            b'a' => {
                let item = self.pop()?;
                self.extend(vec![item])?;
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                self.extend(items)?;
            }
            0x91 => {
                let items = self.pop_mark()?;
                let set = Raw::List(Seq { depth: child_depth(items.iter())?, items });
                self.stack.push(Raw::call("builtins".into(), "frozenset".into(), Raw::tuple(vec![set])?)?);
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![(key, value)])?;
            }
            b'u' => self.set_items_from_mark()?,
            b'h' | b'j' => {
                let index = if op == b'h' { u32::from(self.cur.u8()?) } else { self.cur.u32()? };
                self.get(index)?;
            }
            b'q' | b'r' | 0x94 => {
                let index = match op {
                    b'q' => u32::from(self.cur.u8()?),
                    b'r' => self.cur.u32()?,
                    _ => u32::try_from(self.memo.len()).map_err(|_| "memo too large")?,
                };
                self.put(index)?;
            }
            _ => self.step_object(op)?,
        }
        Ok(())
    }

    /// Opcodes that name, call and complete objects.
    fn step_object(&mut self, op: u8) -> Result<(), String> {
        match op {
            b'c' => {
                let module = self.cur.line()?;
                let name = self.cur.line()?;
                self.stack.push(Raw::Global { module, name });
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (module, name) = (self.string(&module)?, self.string(&name)?);
                self.stack.push(Raw::Global { module, name });
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let func = self.pop()?;
                self.apply(&func, args)?;
            }
            0x92 => {
                let _kwargs = self.pop()?; // NEWOBJ_EX: keyword arguments to __new__, which no class we rebuild takes
                let args = self.pop()?;
                let cls = self.pop()?;
                self.apply(&cls, args)?;
            }
            b'b' => {
                let state = self.pop()?;
                self.build(state)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                child_depth(std::iter::once(&pid))?;
                self.stack.push(Raw::Persistent(Box::new(pid)));
            }
            _ => self.step_scalar(op)?,
        }
        Ok(())
    }

    /// Opcodes that push a number, string or constant.
    fn step_scalar(&mut self, op: u8) -> Result<(), String> {
        let value = match op {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(i64::from(self.cur.i32()?)),
            b'K' => Value::Int(i64::from(self.cur.u8()?)),
            b'M' => Value::Int(i64::from(u16::from_le_bytes(self.cur.array()?))),
            0x8a => {
                let n = self.cur.u8()?;
                long(self.cur.take(u64::from(n))?)
            }
            0x8b => {
                let n = u64::try_from(self.cur.i32()?).map_err(|_| "negative LONG4 length")?;
                long(self.cur.take(n)?)
            }
            b'G' => Value::Float(f64::from_be_bytes(self.cur.array()?)),
            b'X' | 0x8c | b'U' | 0x8d | b'T' => {
                let n = self.length(op)?;
                // Lossy: pickles may hold lone surrogates (Python's surrogatepass), which Rust strings cannot.
                Value::Str(String::from_utf8_lossy(self.cur.take(n)?).into_owned())
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = self.length(op)?;
                Value::Bytes(self.cur.take(n)?.to_vec())
            }
            _ => return Err(format!("opcode 0x{op:02x} is not one torch.save emits and is not supported")),
        };
        self.stack.push(Raw::Leaf(value));
        Ok(())
    }

    /// The length operand of a string or bytes opcode, by its width.
    fn length(&mut self, op: u8) -> Result<u64, String> {
        match op {
            0x8c | b'U' | b'C' => Ok(u64::from(self.cur.u8()?)),
            b'X' | b'B' => Ok(u64::from(self.cur.u32()?)),
            b'T' => u64::try_from(self.cur.i32()?).map_err(|_| "negative BINSTRING length".into()),
            _ => self.cur.u64(),
        }
    }

    fn pop(&mut self) -> Result<Raw, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("pops past a MARK".into());
        }
        self.stack.pop().ok_or_else(|| "pops from an empty stack".into())
    }

    fn pop_mark(&mut self) -> Result<Vec<Raw>, String> {
        let mark = self.marks.pop().ok_or("no MARK to pop to")?;
        Ok(self.stack.split_off(mark))
    }

    fn tuple_n(&mut self, n: usize) -> Result<(), String> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.pop()?);
        }
        items.reverse();
        self.stack.push(Raw::tuple(items)?);
        Ok(())
    }

    fn get(&mut self, index: u32) -> Result<(), String> {
        if !self.memo.contains_key(&index) {
            return Err(format!("memo slot {index} read before it was written"));
        }
        self.stack.push(Raw::Ref(index));
        Ok(())
    }

    /// Moves the top of the stack into the memo and leaves a ref in its place, so later mutations
    /// through either reach the same value.
    fn put(&mut self, index: u32) -> Result<(), String> {
        if self.memo.contains_key(&index) {
            return Err(format!("memo slot {index} written twice"));
        }
        let top = self.stack.last_mut().ok_or("memoizes from an empty stack")?;
        let value = std::mem::replace(top, Raw::Ref(index));
        self.memo.insert(index, value);
        Ok(())
    }

    /// Follows refs to the value they stand for.
    fn deref<'b>(&'b self, mut raw: &'b Raw) -> Result<&'b Raw, String> {
        for _ in 0..MAX_CHAIN {
            match raw {
                Raw::Ref(i) => raw = self.memo.get(i).ok_or_else(|| format!("memo slot {i} is missing"))?,
                _ => return Ok(raw),
            }
        }
        Err("memo refs chain in a loop".into())
    }

    /// The value the top of the stack stands for, to mutate it where it lives (stack or memo).
    fn target(&mut self) -> Result<&mut Raw, String> {
        let mut index = None;
        let mut cur = self.stack.last().ok_or("nothing on the stack to add to")?;
        for _ in 0..MAX_CHAIN {
            let Raw::Ref(i) = cur else { break };
            index = Some(*i);
            cur = self.memo.get(i).ok_or_else(|| format!("memo slot {i} is missing"))?;
        }
        if matches!(cur, Raw::Ref(_)) {
            return Err("memo refs chain in a loop".into());
        }
        match index {
            Some(i) => self.memo.get_mut(&i).ok_or_else(|| format!("memo slot {i} is missing")),
            None => self.stack.last_mut().ok_or_else(|| "empty stack".into()),
        }
    }

    fn string(&self, raw: &Raw) -> Result<String, String> {
        match self.deref(raw)? {
            Raw::Leaf(Value::Str(s)) => Ok(s.clone()),
            other => Err(format!("expected a string, found {}", other.what())),
        }
    }

    fn apply(&mut self, func: &Raw, args: Raw) -> Result<(), String> {
        let (module, name) = match self.deref(func)? {
            Raw::Global { module, name } => (module.clone(), name.clone()),
            other => return Err(format!("calls {}, which is not a class or function", other.what())),
        };
        self.stack.push(Raw::call(module, name, args)?);
        Ok(())
    }

    fn extend(&mut self, items: Vec<Raw>) -> Result<(), String> {
        let depth = child_depth(items.iter())?;
        match self.target()? {
            Raw::List(seq) => {
                seq.depth = seq.depth.max(depth);
                seq.items.extend(items);
            }
            Raw::Call(call) => {
                call.depth = call.depth.max(depth);
                call.items.extend(items);
            }
            other => return Err(format!("appends to {}, which is not a list", other.what())),
        }
        Ok(())
    }

    fn set_items_from_mark(&mut self) -> Result<(), String> {
        let flat = self.pop_mark()?;
        if flat.len() % 2 != 0 {
            return Err("SETITEMS with an odd number of keys and values".into());
        }
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        self.set_items(pairs)
    }

    fn set_items(&mut self, pairs: Vec<(Raw, Raw)>) -> Result<(), String> {
        let depth = child_depth(pairs.iter().flat_map(|(k, v)| [k, v]))?;
        match self.target()? {
            Raw::Dict(map) => {
                map.depth = map.depth.max(depth);
                map.pairs.extend(pairs);
            }
            Raw::Call(call) => {
                call.depth = call.depth.max(depth);
                call.entries.extend(pairs);
            }
            other => return Err(format!("sets items on {}, which is not a dict", other.what())),
        }
        Ok(())
    }

    fn build(&mut self, state: Raw) -> Result<(), String> {
        let depth = child_depth(std::iter::once(&state))?;
        match self.target()? {
            Raw::Call(call) => {
                call.depth = call.depth.max(depth);
                call.state = Some(state);
                Ok(())
            }
            other => Err(format!("sets the state of {}, which is not an object", other.what())),
        }
    }
}

/// Python's LONG1/LONG4 payload: little-endian two's complement of any length.
fn long(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(bytes.to_vec());
    }
    let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) { 0xff } else { 0 };
    let mut full = [fill; 8];
    full[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(full))
}
