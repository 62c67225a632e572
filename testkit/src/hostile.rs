//! Hostile input shared by the integration tests and `make reliability`: a
//! seeded generator of argument atoms, the commands to aim them at, and a
//! DUMP payload resealed with a valid checksum so it reaches the loader.

/// Every command the module registers (the integration test
/// `the_hostile_command_list_names_every_command` keeps it so).
pub const COMMANDS: &[&str] = &[
    "INV.SET",
    "INV.ADD",
    "INV.GET",
    "INV.RESERVE",
    "INV.CONFIRM",
    "INV.CANCEL",
    "INV.EXTEND",
    "INV.ADJUST",
    "INV.RULES",
    "INV.FEED",
    "INV.BUYER",
    "INV.TX",
    "INV.MRESERVE",
    "INV.MCONFIRM",
    "INV.MCANCEL",
    "INV.SCAN",
    "INV.AUDIT",
    "INV.APPLY",
    "INV.APPLY.CONFIRM",
    "INV.APPLY.CANCEL",
];

/// A small xorshift generator: a run with the same seed is the same run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One argument: a word the parsers look for, a number at or past a
    /// bound, arbitrary bytes, or arbitrary UTF-8 (U+0100 and U+3000 among it).
    pub fn atom(&mut self) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "k",
            "{k}b",
            "t",
            "1",
            "0",
            "-1",
            "5",
            "TTL",
            "PXAT",
            "COUNT",
            "IFVERSION",
            "9007199254740991",
            "9007199254740992",
            "9223372036854775807",
            "1e3",
            "Ā",
            "\u{3000}",
            "一",
            "%s%n",
            "RESERVE",
            "CONFIRM",
            "CANCEL",
            "EXPIRE",
            "EXPIRE-FIRST",
            "STOCK",
            "ADD",
            "EXTEND",
            "FENCE",
            "PURGE",
            "LOAD",
            "RECORDS",
        ];
        match self.below(5) {
            0 | 1 => WORDS[self.below(WORDS.len())].as_bytes().to_vec(),
            2 => (0..self.below(12)).map(|_| self.next_u64() as u8).collect(),
            3 => (0..self.below(6))
                .filter_map(|_| char::from_u32((self.next_u64() % 0x11000) as u32))
                .collect::<String>()
                .into_bytes(),
            _ => {
                let n = 1_u64 << self.below(64);
                n.wrapping_sub(self.below(3) as u64)
                    .to_string()
                    .into_bytes()
            }
        }
    }
}

impl Rng {
    /// One argument vector: a command, mostly a real key first (so the
    /// arguments after it are reached: `k` or `{k}b`), then `atoms` atoms.
    pub fn vector(&mut self, atoms: usize) -> Vec<Vec<u8>> {
        let mut args: Vec<Vec<u8>> = vec![COMMANDS[self.below(COMMANDS.len())].into()];
        if self.below(4) > 0 {
            args.push(if self.below(2) == 0 {
                b"k".to_vec()
            } else {
                b"{k}b".to_vec()
            });
        }
        for _ in 0..atoms {
            args.push(self.atom());
        }
        args
    }
}

/// A DUMP payload with its trailing CRC-64 recomputed, so RESTORE passes it
/// to the module's loader whatever was changed before the trailer.
pub fn with_crc(mut payload: Vec<u8>) -> Vec<u8> {
    let Some(n) = payload.len().checked_sub(8) else {
        return payload;
    };
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(&payload[..n]);
    payload[n..].copy_from_slice(&crc.to_le_bytes());
    payload
}
