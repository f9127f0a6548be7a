//! veilfs: an encrypted overlay filesystem for chat backups kept on
//! storage you do not control. See docs/ARCHITECTURE.md for the map.

pub mod check;
pub mod cli;
pub mod conflict;
pub mod content;
pub mod cryptfile;
pub mod crypto;
pub mod encrypt;
pub mod export;
pub mod fs;
pub mod keys;
pub mod names;
pub mod offline;
pub mod pathmap;
pub mod reclaim;
pub mod rekey;
pub mod store;
pub mod tree;
pub mod vault;
