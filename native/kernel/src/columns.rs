//! Arrow-layout column builders: little-endian values, packed validity bits, int32 offsets.
//! Python wraps the finished buffers with `pyarrow.Array.from_buffers`, without copying.

#[derive(Default)]
pub struct Bits {
    pub bytes: Vec<u8>,
    len: usize,
}

impl Bits {
    pub fn with_capacity(n: usize) -> Self {
        Bits { bytes: Vec::with_capacity(n.div_ceil(8)), len: 0 }
    }

    #[inline]
    pub fn push(&mut self, bit: bool) {
        if self.len % 8 == 0 {
            self.bytes.push(0);
        }
        if bit {
            *self.bytes.last_mut().expect("a byte was pushed") |= 1 << (self.len % 8);
        }
        self.len += 1;
    }
}

/// One output column; every push adds one row.
pub enum Column {
    Int { values: Vec<i64>, valid: Bits },
    Dec { values: Vec<i128>, valid: Bits },
    Time { values: Vec<i64>, valid: Bits, naive: Bits },
    Str(StrColumn),
}

#[derive(Default)]
pub struct StrColumn {
    pub offsets: Vec<i32>,
    pub data: Vec<u8>,
    pub valid: Bits,
}

impl StrColumn {
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        StrColumn { offsets, data: Vec::with_capacity(bytes), valid: Bits::with_capacity(n) }
    }

    #[inline]
    pub fn push(&mut self, value: Option<&[u8]>) {
        if let Some(v) = value {
            self.data.extend_from_slice(v);
        }
        self.valid.push(value.is_some());
        self.offsets.push(self.data.len() as i32);
    }
}

/// A list<string> column of reason codes; most rows have an empty list.
pub struct ReasonColumn {
    pub offsets: Vec<i32>,
    pub items: StrColumn,
}

impl ReasonColumn {
    pub fn with_capacity(n: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        ReasonColumn { offsets, items: StrColumn::with_capacity(16, 256) }
    }

    #[inline]
    pub fn push_item(&mut self, reason: &str) {
        self.items.push(Some(reason.as_bytes()));
    }

    #[inline]
    pub fn end_row(&mut self) {
        self.offsets.push(self.items.offsets.len() as i32 - 1);
    }
}

/// The bytes of a slice of plain integers, as Arrow lays them out (little-endian).
pub fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    #[cfg(not(target_endian = "little"))]
    compile_error!("Arrow buffers are little-endian; this kernel writes them as they are in memory");
    // SAFETY: integers have no padding and every bit pattern of u8 is valid
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}
