//! A small, strict pickle machine for the objects PyTorch checkpoints hold: containers, strings, numbers, the
//! `OrderedDict` of a state dict and tensors rebuilt from persistent storage ids (see [`super::objects`]). Any
//! opcode outside protocols 2–5's binary set, any persistent id that is not a storage, or a malformed stream is an
//! error with its byte offset; nothing is executed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::objects::{self, ObjError, Value};

/// Why a pickle stream could not be read; `offset` is relative to the start of the stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PickleError {
    Truncated { offset: usize, what: &'static str },
    Malformed { offset: usize, msg: String },
    UnsupportedStorage { offset: usize, class: String },
}

type PResult<T> = std::result::Result<T, PickleError>;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

/// Runs one pickle from the start of `data` to its `STOP`; returns the object and the bytes consumed.
pub(crate) fn load(data: &[u8]) -> PResult<(Value, usize)> {
    let mut m = Machine { data, pos: 0, op_at: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    loop {
        m.op_at = m.pos;
        let op = m.take(1, "an opcode")?[0];
        if op == b'.' {
            if m.stack.len() != 1 || !m.marks.is_empty() {
                return m.bad(format!("STOP with {} objects and {} marks on the stack", m.stack.len(), m.marks.len()));
            }
            let top = m.pop()?;
            return Ok((top, m.pos));
        }
        m.step(op)?;
    }
}

impl Machine<'_> {
    fn bad<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err(PickleError::Malformed { offset: self.op_at, msg: msg.into() })
    }

    fn take(&mut self, n: usize, what: &'static str) -> PResult<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(PickleError::Truncated { offset: self.pos, what });
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1, "an opcode argument")?[0])
    }
    fn u32(&mut self) -> PResult<u32> {
        let b = self.take(4, "an opcode argument")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> PResult<u64> {
        let b = self.take(8, "an opcode argument")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> PResult<String> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&c| c == b'\n') else {
            return Err(PickleError::Truncated { offset: self.pos, what: "a newline-terminated name" });
        };
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| PickleError::Malformed { offset: self.op_at, msg: "GLOBAL name is not UTF-8".into() })?;
        let s = s.to_string();
        self.pos += n + 1;
        Ok(s)
    }
    fn text(&mut self, n: usize) -> PResult<Value> {
        let b = self.take(n, "a string")?.to_vec();
        match String::from_utf8(b) {
            Ok(s) => Ok(Value::Str(s)),
            Err(_) => self.bad("string is not UTF-8"),
        }
    }

    fn pop(&mut self) -> PResult<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return self.bad("pop across a MARK");
        }
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.bad("stack underflow"),
        }
    }
    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let Some(m) = self.marks.pop() else { return self.bad("no MARK on the stack") };
        Ok(self.stack.split_off(m))
    }
    fn top(&self) -> PResult<&Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) || self.stack.is_empty() {
            return self.bad("no object below the top of the stack");
        }
        Ok(&self.stack[self.stack.len() - 1])
    }
    fn obj(&self, r: std::result::Result<Value, ObjError>) -> PResult<Value> {
        r.map_err(|e| match e {
            ObjError::Malformed(msg) => PickleError::Malformed { offset: self.op_at, msg },
            ObjError::UnsupportedStorage(class) => PickleError::UnsupportedStorage { offset: self.op_at, class },
        })
    }

    fn step(&mut self, op: u8) -> PResult<()> {
        let v = match op {
            0x80 => {
                let p = self.u8()?;
                if !(2..=5).contains(&p) {
                    return self.bad(format!("pickle protocol {p} (2–5 supported)"));
                }
                return Ok(());
            }
            0x95 => {
                self.u64()?;
                return Ok(());
            }
            b'(' => {
                self.marks.push(self.stack.len());
                return Ok(());
            }
            b'0' => {
                self.pop()?;
                return Ok(());
            }
            b'1' => {
                self.pop_mark()?;
                return Ok(());
            }
            b'2' => self.top()?.clone(),
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(self.u32()? as i32 as i64),
            b'K' => Value::Int(self.u8()? as i64),
            b'M' => {
                let b = self.take(2, "an opcode argument")?;
                Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64)
            }
            0x8a | 0x8b => {
                let n = if op == 0x8a { self.u8()? as usize } else { self.u32()? as usize };
                let b = self.take(n, "a long integer")?;
                if n <= 8 {
                    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
                    let mut a = [fill; 8];
                    a[..n].copy_from_slice(b);
                    Value::Int(i64::from_le_bytes(a))
                } else {
                    Value::BigInt(b.to_vec())
                }
            }
            b'G' => {
                let b = self.take(8, "a float")?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Float(f64::from_be_bytes(a))
            }
            b'X' => {
                let n = self.u32()? as usize;
                self.text(n)?
            }
            0x8c => {
                let n = self.u8()? as usize;
                self.text(n)?
            }
            0x8d => {
                let n = self.u64()? as usize;
                self.text(n)?
            }
            // Python 2 `str` (BINSTRING, SHORT_BINSTRING) and `bytes` (BINBYTES, SHORT_BINBYTES).
            b'T' | b'U' | b'B' | b'C' => {
                let n = if op == b'T' || op == b'B' { self.u32()? as usize } else { self.u8()? as usize };
                let b = self.take(n, "a byte string")?.to_vec();
                match (op, String::from_utf8(b)) {
                    (b'T' | b'U', Ok(s)) => Value::Str(s),
                    (_, Ok(s)) => Value::Bytes(s.into_bytes()),
                    (_, Err(e)) => Value::Bytes(e.into_bytes()),
                }
            }
            b')' => Value::Tuple(Rc::new(Vec::new())),
            b't' => Value::Tuple(Rc::new(self.pop_mark()?)),
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut t = (0..n).map(|_| self.pop()).collect::<PResult<Vec<_>>>()?;
                t.reverse();
                Value::Tuple(Rc::new(t))
            }
            b']' => Value::List(Rc::new(RefCell::new(Vec::new()))),
            b'l' => Value::List(Rc::new(RefCell::new(self.pop_mark()?))),
            b'}' => Value::Dict(Rc::new(RefCell::new(Vec::new()))),
            b'd' => {
                let items = self.pop_mark()?;
                Value::Dict(Rc::new(RefCell::new(self.pairs(items)?)))
            }
            b'a' | b'e' => {
                let items = if op == b'a' { vec![self.pop()?] } else { self.pop_mark()? };
                match self.top()? {
                    Value::List(l) => l.borrow_mut().extend(items),
                    other => return self.bad(format!("APPEND to a {}", other.kind())),
                }
                return Ok(());
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = self.pop()?;
                    vec![self.pop()?, v]
                } else {
                    self.pop_mark()?
                };
                let pairs = self.pairs(items)?;
                match self.top()? {
                    Value::Dict(d) => d.borrow_mut().extend(pairs),
                    other => return self.bad(format!("SETITEM on a {}", other.kind())),
                }
                return Ok(());
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                Value::Global(Rc::new((module, name)))
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => Value::Global(Rc::new((m, n))),
                    _ => return self.bad("STACK_GLOBAL needs two strings"),
                }
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.obj(objects::reduce(callable, args))?
            }
            b'b' => {
                // Instance state (e.g. a state dict's `_metadata`): not part of the tensors; kept out.
                let _state = self.pop()?;
                match self.top()? {
                    Value::Dict(_) | Value::Object(_) => return Ok(()),
                    other => return self.bad(format!("BUILD on a {}", other.kind())),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                self.obj(objects::persistent_load(pid))?
            }
            b'h' | b'j' => {
                let k = if op == b'h' { self.u8()? as u32 } else { self.u32()? };
                match self.memo.get(&k) {
                    Some(v) => v.clone(),
                    None => return self.bad(format!("memo key {k} was never stored")),
                }
            }
            b'q' | b'r' | 0x94 => {
                let k = match op {
                    b'q' => self.u8()? as u32,
                    b'r' => self.u32()?,
                    _ => self.memo.len() as u32,
                };
                let v = self.top()?.clone();
                self.memo.insert(k, v);
                return Ok(());
            }
            other => return self.bad(format!("unsupported pickle opcode 0x{other:02x}")),
        };
        self.stack.push(v);
        Ok(())
    }

    fn pairs(&self, items: Vec<Value>) -> PResult<Vec<(Value, Value)>> {
        if !items.len().is_multiple_of(2) {
            return self.bad("odd number of items for a dict");
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }
}
