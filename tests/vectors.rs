//! Fixed test vectors for docs/FORMAT.md: a fixed key gives fixed bytes, so
//! any change to the on-disk format fails here. The same values come out of
//! tests/format_reference.py, an independent implementation of the spec.
//!
//! Then property tests: random sizes and offsets round-trip, and every kind
//! of tampering the format promises to detect is an authentication error,
//! never garbage.

use sha2::{Digest, Sha256};

use veilfs::content::{CHUNK_OVERHEAD, ChunkError, ChunkLayout, ContentCipher, FileHeader, Opened};
use veilfs::keys::MasterKey;
use veilfs::names::{
    BackingName, DEFAULT_LONG_NAME_THRESHOLD, DirIv, LONG_TARGET_LINK_LEN, NameCipher, NameError,
    StoredTarget, XattrVersion, long_entry_name, long_target_record, long_target_record_matches,
};
use veilfs::vault::{self, FixedSlot, KdfParams, VaultError};

/// K = 00 01 02 ... 1f.
fn fixed_key() -> MasterKey {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8;
    }
    MasterKey::from_bytes(b)
}

fn seq<const N: usize>(start: u8) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, x) in out.iter_mut().enumerate() {
        *x = start.wrapping_add(i as u8);
    }
    out
}

fn layout() -> ChunkLayout {
    ChunkLayout::new(4096).unwrap()
}

fn fixed_header() -> FileHeader {
    FileHeader::with_file_id(layout(), seq(0x10))
}

fn names() -> NameCipher {
    NameCipher::new(&fixed_key().derive(), DEFAULT_LONG_NAME_THRESHOLD)
}

fn content() -> ContentCipher {
    ContentCipher::new(&fixed_key().derive().content, layout())
}

// --- §2 keys ----------------------------------------------------------------

#[test]
fn key_display_and_parse() {
    let k = fixed_key();
    assert_eq!(
        k.display_digits().as_str(),
        "0001-0203-0405-0607-0809-0a0b-0c0d-0e0f-1011-1213-1415-1617-1819-1a1b-1c1d-1e1f"
    );
    let messy = "000102030405060708090A0B0C0D0E0F 10111213 14151617 18191A1B 1C1D1E1F\n";
    assert_eq!(
        MasterKey::parse(messy).unwrap().expose_secret(),
        k.expose_secret()
    );
}

#[test]
fn hkdf_subkeys() {
    let k = fixed_key();
    let d = k.derive();
    assert_eq!(hex::encode(k.key_id()), "6dffbbc8765603be61158d0ce046fdcd");
    assert_eq!(
        hex::encode(d.content.expose_secret()),
        "d814ebe47a70e48c319590e9321917900def69f857a31cf9fa9f807846476c89"
    );
    assert_eq!(
        hex::encode(d.names.expose_secret()),
        "ef28a65ac5ae42caf692c859b39a89120ac8fd709e69a736ab153b388c443bc1"
    );
    assert_eq!(
        hex::encode(d.dir_iv.expose_secret()),
        "39311ace6997041fc70cfbb5d7944ccbbe52123c6f25b61a5a829760684a8511"
    );
    assert_eq!(
        hex::encode(d.metadata.expose_secret()),
        "2bed8d740167373ece9de5d116954be7777e980fc0a2ca30ff2a0920a21f3227"
    );
    assert_eq!(
        hex::encode(d.config_mac.expose_secret()),
        "4a93c5dc9aad36c39a899135d765beee35e7f30730086a95d7efcaad6c3772f4"
    );
    assert_eq!(
        hex::encode(d.root_dir_iv),
        "8ad93d96d63a3da8ff1937900d76ecc6"
    );
}

// --- §4 content ---------------------------------------------------------------

#[test]
fn file_header_bytes() {
    assert_eq!(
        hex::encode(fixed_header().as_bytes()),
        "010c101112131415161718191a1b1c1d1e1f"
    );
}

const CHUNK_PLAIN: &[u8] = b"veilfs test vector: chunk 0";

fn seal_fixed(index: u64, last: bool) -> Vec<u8> {
    content().sealed_with_nonce(seq(0xa0), &fixed_header(), (index, last), CHUNK_PLAIN)
}

#[test]
fn sealed_chunk_with_fixed_nonce() {
    let last = seal_fixed(0, true);
    assert_eq!(
        hex::encode(&last),
        "a0a1a2a3a4a5a6a7a8a9aaab85bbe70d2f1008ad9559b28f1b8f5691a9a1fd495ed1222a1d1744648fccb830518ae039b713891fb6e418"
    );
    // Same plaintext and nonce at index 5, not last: the AD changes the tag
    // (GCM-SIV derives the keystream from the tag, so the body too).
    let middle = seal_fixed(5, false);
    assert_eq!(
        hex::encode(&middle),
        "a0a1a2a3a4a5a6a7a8a9aaab888d9bbc7164d54f3718e4e47de2ad6d0a356221b62835bf2b4ffcd03ba138a34062c12570645fc4e7db48"
    );
    let mut out = vec![0u8; 4096];
    assert_eq!(
        content().open_chunk(&fixed_header(), 0, true, &last, &mut out),
        Ok(Opened::Data(CHUNK_PLAIN.len()))
    );
    assert_eq!(&out[..CHUNK_PLAIN.len()], CHUNK_PLAIN);
}

#[test]
fn whole_file_with_fixed_nonces() {
    let plain: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let header = fixed_header();
    let c = content();
    let mut backing = header.as_bytes().to_vec();
    let chunks: Vec<&[u8]> = plain.chunks(4096).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let nonce = [0xb0 + i as u8; 12];
        let last = i == chunks.len() - 1;
        backing.extend_from_slice(&c.sealed_with_nonce(nonce, &header, (i as u64, last), chunk));
    }
    assert_eq!(backing.len() as u64, layout().cipher_size(5000));
    assert_eq!(backing.len(), 5074);
    assert_eq!(
        hex::encode(Sha256::digest(&backing)),
        "126003fdee0e737dc77277db7c24dae98673dc43d93b663105538058c11dbaec"
    );
    assert_eq!(read_all(&c, &backing).unwrap(), plain);
}

// --- §5, §6 names and directory IVs ----------------------------------------

#[test]
fn names_in_the_root() {
    let n = names();
    let root = n.root_iv();
    assert_eq!(
        n.encrypt_name(&root, b"chat.db").unwrap(),
        "OLrp_xu_M2wYSTvckNmZz2K4iFowMNhnnvO9nNJNwPA"
    );
    // 16 bytes: a whole block of padding, so one block longer.
    assert_eq!(
        n.encrypt_name(&root, b"0123456789abcdef").unwrap(),
        "BRcMEu3uBV4yonB9OnDk-cw2tiGYJa_Wx_zshvAjvJDNy6iJahHWw8li39KM_bf8"
    );
    assert_eq!(
        n.decrypt_name(&root, "OLrp_xu_M2wYSTvckNmZz2K4iFowMNhnnvO9nNJNwPA")
            .unwrap(),
        b"chat.db"
    );
}

#[test]
fn child_dir_iv_and_a_name_in_it() {
    let n = names();
    let wa = n.child_dir_iv(&n.root_iv(), b"WhatsApp");
    assert_eq!(hex::encode(wa.0), "186e521e85c1759f07ee968ca5cf6790");
    assert_eq!(
        n.encrypt_name(&wa, b"msgstore.db.crypt14").unwrap(),
        "yNFX3x2X6Fijk2CuJstwGkQ2ng7It6tqCYZNyNXHDiqtRbOyc0J5pUH1vK7V_ACB"
    );
}

const LONG_FULL: &str = "I3jncFIprwfW_64FXxGaQDvgG-bh6gAWTX-PcYRMHg1XMDZba7_VCt3G265Scx3VEPuv-ZT-Xr35nB0FEYF98nHCGzcxJ8_mc4X8t7tT-o-uzvBfqCBHPn28IdzH7pJKP9rx39LT4xgWjiIwqGpzV7Ah6pCQuI2QUvpoWEBMOz6cl0Y2wTlG25Si2MCKxnPc0fCNil_2ZjtD7TDmxzSqT07tA-STodi-_Z1FA3UrGh5JRpUG37YUy0FEhj1JIaybd4Dcc5sznEeh3eYUt2DVwYWue5ZQfE8cBFnmx_Af1Tk";

#[test]
fn long_name_entry_and_record() {
    let n = names();
    let root = n.root_iv();
    let name = [b'a'; 200];
    match n.backing_name(&root, &name).unwrap() {
        BackingName::Long { entry, full } => {
            assert_eq!(entry, "9y7j4_SVAA7jRmFfJFg3K10nWTo_3U9ugiTHJ7qHJ_8.vln");
            assert_eq!(full, LONG_FULL);
            assert_eq!(full.len(), 299);
            assert_eq!(long_entry_name(&full), entry);
            let (record, contents) = BackingName::Long {
                entry: entry.clone(),
                full: full.clone(),
            }
            .long_record()
            .map(|(r, c)| (r, c.to_string()))
            .unwrap();
            assert_eq!(record, format!("{entry}.name"));
            assert_eq!(contents, LONG_FULL);
        }
        other => panic!("expected a long name, got {other:?}"),
    }
    assert_eq!(n.decrypt_name(&root, LONG_FULL).unwrap(), name);
}

// --- §7 symlink targets -------------------------------------------------------

const SYMLINK_NONCE_START: u8 = 0x40;

#[test]
fn short_symlink_target_is_inline() {
    let n = names();
    let stored = n.store_symlink_target_with_nonce(
        &n.root_iv(),
        b"../media/IMG-0001.jpg",
        seq(SYMLINK_NONCE_START),
    );
    let StoredTarget::Inline(s) = &stored else {
        panic!("expected an inline target, got {stored:?}");
    };
    assert_eq!(
        s,
        "QEFCQ0RFRkdISUpL_GHOLhX1H9OYYhPGDpXOTcEvTbJXCQmKqEofjsbhDesgv1GsNw"
    );
    assert_eq!(
        n.decrypt_symlink_target(&n.root_iv(), s.as_bytes())
            .unwrap(),
        b"../media/IMG-0001.jpg"
    );
}

#[test]
fn path_max_symlink_target_is_kept_in_a_record() {
    let n = names();
    let target = [b'a'; 4095];
    let stored = n.store_symlink_target_with_nonce(&n.root_iv(), &target, seq(SYMLINK_NONCE_START));
    let StoredTarget::Long { link, sealed } = &stored else {
        panic!("expected a long target, got {stored:?}");
    };
    assert_eq!(link, "ANEMOt_04y9mB4wHGnAHIVox7yBHxi_rQaZsPo2cnRo.vlink");
    assert_eq!(link.len(), LONG_TARGET_LINK_LEN);
    assert_eq!(sealed.len(), 5498);
    assert_eq!(
        hex::encode(Sha256::digest(sealed.as_bytes())),
        "00d10c3adff4e32f66078c071a7007215a31ef2047c62feb41a66c3e8d9c9d1a"
    );
    assert_eq!(long_target_record(link.as_bytes()), Some(link.as_str()));
    assert!(long_target_record_matches(link, sealed.as_bytes()));
    assert!(!long_target_record_matches(link, &sealed.as_bytes()[1..]));
    assert_eq!(
        n.decrypt_symlink_target(&n.root_iv(), sealed.as_bytes())
            .unwrap(),
        target
    );
    // The longest inline target and the shortest record.
    let inline = n.store_symlink_target(&n.root_iv(), &[b'a'; 740]);
    assert!(matches!(&inline, StoredTarget::Inline(s) if s.len() == 1024));
    assert!(matches!(
        n.store_symlink_target(&n.root_iv(), &[b'a'; 741]),
        StoredTarget::Long { .. }
    ));
}

#[test]
fn xattr_name() {
    // The first version (unpadded): still read.
    let n = names();
    assert_eq!(
        n.encrypt_xattr_name_v1(b"comment"),
        "user.COUyTedafZ6tw5VZ5lmb4gq71HneNlg"
    );
    assert_eq!(
        n.decrypt_xattr_name("user.COUyTedafZ6tw5VZ5lmb4gq71HneNlg")
            .unwrap(),
        (b"comment".to_vec(), XattrVersion::V1)
    );
    // Version 2: padded to 16 bytes.
    assert_eq!(
        n.encrypt_xattr_name(b"comment"),
        "user.AmBc8BOXmvWY2Hj4qaGLmj5YqXBei1QvZWOLwrw_mLI"
    );
}

#[test]
fn dir_iv_birth_tag() {
    let n = names();
    let birth = n.dir_birth_tag(&n.root_iv(), b"Media");
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&seq::<8>(0x30));
    iv[8..].copy_from_slice(&birth);
    assert_eq!(hex::encode(iv), "30313233343536378e76fcb64642b47b");
    let fresh = n.new_dir_iv(&n.root_iv(), b"Media");
    assert_eq!(fresh.0[8..], birth);
}

#[test]
fn xattr_value_bound_to_its_entry() {
    let n = names();
    let name = n.encrypt_xattr_name(b"comment");
    let id = seq::<16>(0x20);
    let v = n.encrypt_xattr_value_with_nonce(&name, &id, b"hello", seq::<12>(0xD0));
    assert_eq!(
        hex::encode(&v),
        "d0d1d2d3d4d5d6d7d8d9dadb85ede7d469d51303e286d17c0c10dafc990dae0367"
    );
    assert_eq!(
        n.decrypt_xattr_value(&name, XattrVersion::V2, Some(&id), v)
            .unwrap(),
        b"hello"
    );
}

#[test]
fn symlink_target_bound_to_its_directory() {
    let n = names();
    let media =
        DirIv::from_slice(&hex::decode("30313233343536378e76fcb64642b47b").unwrap()).unwrap();
    let t =
        n.encrypt_symlink_target_with_nonce(&media, b"../WhatsApp/msgstore.db", seq::<12>(0xC0));
    assert_eq!(
        t,
        "wMHCw8TFxsfIycrLVKMnVMPM4DdX9crZ2wUCa_iSRaHX8st_I9V_xNDcaQj7Bib0JGqk"
    );
    assert_eq!(
        n.decrypt_symlink_target(&media, t.as_bytes()).unwrap(),
        b"../WhatsApp/msgstore.db"
    );
    assert!(
        n.decrypt_symlink_target(&n.root_iv(), t.as_bytes())
            .is_err()
    );
}

// --- §3 config ---------------------------------------------------------------

const PASSWORD: &[u8] = b"correct horse battery staple";

const PASSWORD_CONFIG: &str = r#"{
  "format": "veilfs",
  "version": 1,
  "created": "2026-01-01T00:00:00Z",
  "cipher": "AES-256-GCM-SIV",
  "chunk_size": 4096,
  "long_name_threshold": 175,
  "feature_flags": [],
  "key_id": "bf-7yHZWA75hFY0M4Eb9zQ",
  "key_slots": [
    {
      "kind": "password",
      "kdf": "argon2id",
      "argon2_version": 19,
      "m_kib": 32768,
      "t": 2,
      "p": 1,
      "salt": "QEFCQ0RFRkdISUpLTE1OTw",
      "nonce": "UFFSU1RVVldYWVpb",
      "wrapped_key": "QFwMOfIy5nkY9PzBt71qPL5CEhDbz3lfOsBfdMiVfAqfTVHHAl_K2-XEal49FEDt"
    }
  ],
  "mac": "clUnmnex3sLaympUV1VOBPxf1b4gVBkd8B8k9CzHWV4"
}
"#;

const KEY_ONLY_CONFIG: &str = r#"{
  "format": "veilfs",
  "version": 1,
  "created": "2026-01-01T00:00:00Z",
  "cipher": "AES-256-GCM-SIV",
  "chunk_size": 4096,
  "long_name_threshold": 175,
  "feature_flags": [],
  "key_id": "bf-7yHZWA75hFY0M4Eb9zQ",
  "key_slots": [],
  "mac": "1RS-du0RbWEiRVWDEKDODJTgI2domK2zteJwThK2i5Y"
}
"#;

fn vault_with(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(vault::CONFIG_FILE), config).unwrap();
    dir
}

#[test]
fn password_config_unwraps_to_the_fixed_key() {
    let dir = vault_with(PASSWORD_CONFIG);
    let v = vault::unlock_with_password(dir.path(), PASSWORD).unwrap();
    assert_eq!(v.master.expose_secret(), fixed_key().expose_secret());
    assert_eq!(v.config.chunk_size, 4096);
    assert_eq!(v.config.long_name_threshold, 175);
    assert!(matches!(
        vault::unlock_with_password(dir.path(), b"Tr0ub4dor&3"),
        Err(VaultError::WrongPassword { .. })
    ));
    // The key opens it too.
    vault::unlock_with_key(dir.path(), fixed_key()).unwrap();
}

#[test]
fn password_config_is_reproduced_byte_for_byte() {
    let built = vault::build_config_for_test_vectors(
        &fixed_key(),
        4096,
        175,
        "2026-01-01T00:00:00Z",
        Some(FixedSlot {
            password: PASSWORD,
            kdf: KdfParams::MINIMUM,
            salt: seq(0x40),
            nonce: seq(0x50),
        }),
    )
    .unwrap();
    assert_eq!(built.to_json(), PASSWORD_CONFIG);
}

#[test]
fn key_only_config() {
    let built =
        vault::build_config_for_test_vectors(&fixed_key(), 4096, 175, "2026-01-01T00:00:00Z", None)
            .unwrap();
    assert_eq!(built.to_json(), KEY_ONLY_CONFIG);
    let dir = vault_with(KEY_ONLY_CONFIG);
    let v = vault::unlock_with_key(dir.path(), fixed_key()).unwrap();
    assert!(v.config.key_slots.is_empty());
    assert!(matches!(
        vault::unlock_with_key(dir.path(), MasterKey::from_bytes([9u8; 32])),
        Err(VaultError::WrongKey { .. })
    ));
    assert!(matches!(
        vault::unlock_with_password(dir.path(), PASSWORD),
        Err(VaultError::NoPasswordSlot { .. })
    ));
}

#[test]
fn tampered_vector_configs_fail_loudly() {
    // A parameter changed: the key sees a MAC mismatch, a password sees a
    // slot that no longer opens.
    let edited = PASSWORD_CONFIG.replace("\"chunk_size\": 4096", "\"chunk_size\": 8192");
    let dir = vault_with(&edited);
    assert!(matches!(
        vault::unlock_with_key(dir.path(), fixed_key()),
        Err(VaultError::ConfigTampered { .. })
    ));
    assert!(matches!(
        vault::unlock_with_password(dir.path(), PASSWORD),
        Err(VaultError::WrongPassword { .. })
    ));
    // Weakened KDF: refused before Argon2 runs.
    let weak = PASSWORD_CONFIG.replace("\"m_kib\": 32768", "\"m_kib\": 8");
    let dir = vault_with(&weak);
    assert!(matches!(
        vault::unlock_with_password(dir.path(), PASSWORD),
        Err(VaultError::KdfParamsOutOfRange { param: "m_kib", .. })
    ));
    // A huge KDF: refused before it can exhaust memory.
    let huge = PASSWORD_CONFIG.replace("\"m_kib\": 32768", "\"m_kib\": 4294967295");
    let dir = vault_with(&huge);
    assert!(matches!(
        vault::unlock_with_password(dir.path(), PASSWORD),
        Err(VaultError::KdfParamsOutOfRange { param: "m_kib", .. })
    ));
    let newer = KEY_ONLY_CONFIG.replace("\"version\": 1", "\"version\": 2");
    let dir = vault_with(&newer);
    assert!(matches!(
        vault::load_config(dir.path()),
        Err(VaultError::UnsupportedVersion { version: 2, .. })
    ));
    let flagged = KEY_ONLY_CONFIG.replace("[],\n  \"key_id\"", "[\"future\"],\n  \"key_id\"");
    let dir = vault_with(&flagged);
    assert!(matches!(
        vault::load_config(dir.path()),
        Err(VaultError::UnknownFeature { .. })
    ));
    let extra = KEY_ONLY_CONFIG.replace("\"version\": 1,", "\"version\": 1, \"sneaky\": true,");
    let dir = vault_with(&extra);
    assert!(matches!(
        vault::load_config(dir.path()),
        Err(VaultError::CorruptConfig { .. })
    ));
}

// --- an in-memory backing file for the property tests ----------------------

fn build_file(c: &ContentCipher, header: &FileHeader, plain: &[u8]) -> Vec<u8> {
    if plain.is_empty() {
        return Vec::new();
    }
    let size = c.layout().chunk_size();
    let n = plain.len().div_ceil(size);
    let mut backing = header.as_bytes().to_vec();
    for (i, chunk) in plain.chunks(size).enumerate() {
        let mut out = vec![0u8; chunk.len() + CHUNK_OVERHEAD];
        c.seal_chunk(header, i as u64, i == n - 1, chunk, &mut out);
        backing.extend_from_slice(&out);
    }
    backing
}

#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    Header,
    Chunk(u64, ChunkError),
}

/// Reads `len` bytes at `offset` the way the FUSE layer does: only the
/// chunks touched, the last flag from the backing size.
fn read_range(
    c: &ContentCipher,
    backing: &[u8],
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, ReadError> {
    let l = c.layout();
    let plain_size = l.plain_size(backing.len() as u64);
    if plain_size == 0 || offset >= plain_size {
        return Ok(Vec::new());
    }
    let header = FileHeader::parse(backing, l).map_err(|_| ReadError::Header)?;
    let end = (offset + len).min(plain_size);
    let n = l.chunk_count(plain_size);
    let mut out = Vec::new();
    let mut buf = vec![0u8; l.chunk_size()];
    for i in l.chunks_touched(offset, end - offset) {
        let start = l.chunk_cipher_start(i) as usize;
        let stop = (start + l.stored_chunk_len()).min(backing.len());
        let got = c
            .open_chunk(&header, i, i == n - 1, &backing[start..stop], &mut buf)
            .map_err(|e| ReadError::Chunk(i, e))?;
        let plain_len = match got {
            Opened::Data(k) => k,
            Opened::Hole => l.chunk_size(),
        };
        let chunk_start = l.chunk_plain_start(i);
        let from = offset.max(chunk_start) - chunk_start;
        let to = end.min(chunk_start + plain_len as u64) - chunk_start;
        out.extend_from_slice(&buf[from as usize..to as usize]);
    }
    Ok(out)
}

fn read_all(c: &ContentCipher, backing: &[u8]) -> Result<Vec<u8>, ReadError> {
    if !c.layout().is_valid_cipher_size(backing.len() as u64) {
        return Err(ReadError::Header);
    }
    read_range(c, backing, 0, u64::MAX / 2)
}

fn random_header(l: ChunkLayout) -> FileHeader {
    FileHeader::generate(l)
}

use proptest::prelude::*;

fn plaintext(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn cipher_for(shift: u8) -> ContentCipher {
    ContentCipher::new(
        &fixed_key().derive().content,
        ChunkLayout::from_shift(shift).unwrap(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_ranges_round_trip(
        shift in 12u8..=13,
        plain in plaintext(40_000),
        offset in 0u64..45_000,
        len in 0u64..20_000,
    ) {
        let c = cipher_for(shift);
        let backing = build_file(&c, &random_header(c.layout()), &plain);
        prop_assert_eq!(backing.len() as u64, c.layout().cipher_size(plain.len() as u64));
        prop_assert_eq!(c.layout().plain_size(backing.len() as u64), plain.len() as u64);
        let got = read_range(&c, &backing, offset, len).unwrap();
        let start = (offset as usize).min(plain.len());
        let end = (offset.saturating_add(len) as usize).min(plain.len());
        prop_assert_eq!(&got[..], &plain[start..end]);
        prop_assert_eq!(read_all(&c, &backing).unwrap(), plain);
    }

    #[test]
    fn a_flipped_bit_is_an_authentication_error(
        plain in proptest::collection::vec(any::<u8>(), 1..20_000),
        pos in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let c = cipher_for(12);
        let mut backing = build_file(&c, &random_header(c.layout()), &plain);
        let at = pos.index(backing.len());
        backing[at] ^= 1 << bit;
        prop_assert!(read_all(&c, &backing).is_err(), "flipped bit {} of byte {}", bit, at);
    }

    #[test]
    fn two_swapped_chunks_are_an_authentication_error(
        plain in proptest::collection::vec(any::<u8>(), 8193..30_000),
        a in any::<proptest::sample::Index>(),
        b in any::<proptest::sample::Index>(),
    ) {
        let c = cipher_for(12);
        let l = c.layout();
        let mut backing = build_file(&c, &random_header(l), &plain);
        // Full-size chunks only, so the swap keeps every offset.
        let full = (plain.len() / l.chunk_size()) as u64;
        let i = a.index(full as usize) as u64;
        let mut j = b.index(full as usize) as u64;
        if i == j {
            j = (i + 1) % full;
        }
        let stored = l.stored_chunk_len();
        let (si, sj) = (l.chunk_cipher_start(i) as usize, l.chunk_cipher_start(j) as usize);
        let chunk_i = backing[si..si + stored].to_vec();
        let chunk_j = backing[sj..sj + stored].to_vec();
        backing[si..si + stored].copy_from_slice(&chunk_j);
        backing[sj..sj + stored].copy_from_slice(&chunk_i);
        prop_assert!(matches!(read_all(&c, &backing), Err(ReadError::Chunk(..))));
    }

    #[test]
    fn a_chunk_from_another_file_is_an_authentication_error(
        plain in proptest::collection::vec(any::<u8>(), 1..20_000),
        other in proptest::collection::vec(any::<u8>(), 20_000..20_001),
        pick in any::<proptest::sample::Index>(),
    ) {
        let c = cipher_for(12);
        let l = c.layout();
        let mut victim = build_file(&c, &random_header(l), &plain);
        let donor = build_file(&c, &random_header(l), &other[..plain.len()]);
        prop_assert_eq!(victim.len(), donor.len());
        let n = l.chunk_count(plain.len() as u64);
        let i = pick.index(n as usize) as u64;
        let start = l.chunk_cipher_start(i) as usize;
        let stop = (start + l.stored_chunk_len()).min(victim.len());
        victim[start..stop].copy_from_slice(&donor[start..stop]);
        prop_assert_eq!(read_all(&c, &victim), Err(ReadError::Chunk(i, ChunkError::Unauthentic)));
    }

    #[test]
    fn truncation_at_a_chunk_boundary_is_an_authentication_error(
        plain in proptest::collection::vec(any::<u8>(), 4097..30_000),
        pick in any::<proptest::sample::Index>(),
    ) {
        let c = cipher_for(12);
        let l = c.layout();
        let backing = build_file(&c, &random_header(l), &plain);
        let n = l.chunk_count(plain.len() as u64);
        // Keep k whole chunks, 1 <= k < n: chunk k-1 now looks last but was
        // sealed as not last.
        let k = 1 + pick.index((n - 1) as usize) as u64;
        let cut = &backing[..l.chunk_cipher_start(k) as usize];
        prop_assert!(l.is_valid_cipher_size(cut.len() as u64));
        prop_assert_eq!(
            read_all(&c, cut),
            Err(ReadError::Chunk(k - 1, ChunkError::Unauthentic))
        );
    }

    #[test]
    fn a_name_moved_to_another_directory_is_an_authentication_error(
        name in proptest::collection::vec(any::<u8>(), 1..=255)
            .prop_filter("valid names only", |n| {
                !n.contains(&b'/') && !n.contains(&0) && n != b"." && n != b".."
            }),
        a in any::<[u8; 16]>(),
        b in any::<[u8; 16]>(),
    ) {
        prop_assume!(a != b);
        let n = names();
        let (from, to) = (DirIv(a), DirIv(b));
        let encoded = n.encrypt_name(&from, &name).unwrap();
        prop_assert_eq!(n.decrypt_name(&from, &encoded).unwrap(), name.clone());
        prop_assert_eq!(n.decrypt_name(&to, &encoded), Err(NameError::Unauthentic));
        // Also between real directories: a parent and its child.
        let child = n.child_dir_iv(&from, b"sub");
        prop_assert_eq!(n.decrypt_name(&child, &encoded), Err(NameError::Unauthentic));
    }
}
