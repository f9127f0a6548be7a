use super::*;
use crate::keys::MasterKey;

fn cipher() -> NameCipher {
    NameCipher::new(
        &MasterKey::from_bytes([3u8; 32]).derive(),
        DEFAULT_LONG_NAME_THRESHOLD,
    )
}

/// Issue 13, finding 7: a link record vouches only for its own inode,
/// for at most the count it was made for, and only under the key.
#[test]
fn link_records_are_bound_to_inode_count_and_key() {
    let c = cipher();
    let r = c.link_record(1234, 2);
    assert!(c.link_record_covers(&r, 1234, 2));
    assert!(c.link_record_covers(&r, 1234, 1), "a link removed since");
    assert!(!c.link_record_covers(&r, 1234, 3), "a link added behind it");
    assert!(!c.link_record_covers(&r, 1235, 2), "another inode");
    let mut raised = r;
    raised[7] = 9;
    assert!(!c.link_record_covers(&raised, 1234, 3), "count edited");
    assert!(!c.link_record_covers(&r[..LINK_RECORD_LEN - 1], 1234, 2));
    let other = NameCipher::new(&MasterKey::from_bytes([4u8; 32]).derive(), 175);
    assert!(!other.link_record_covers(&r, 1234, 2), "another key");
    assert_eq!(
        hex::encode(c.link_record(1, 2)),
        hex::encode(cipher().link_record(1, 2)),
        "deterministic"
    );
}

#[test]
fn round_trip_and_determinism() {
    let c = cipher();
    let dir = c.root_iv();
    for name in [
        "a",
        "chat.db",
        "0123456789abcdef",
        "ümlaut ✓ 日本語",
        &"x".repeat(255),
    ] {
        let e1 = c.encrypt_name(&dir, name.as_bytes()).unwrap();
        let e2 = c.encrypt_name(&dir, name.as_bytes()).unwrap();
        assert_eq!(e1, e2, "deterministic");
        assert!(matches!(classify_entry(&e1), EntryKind::Regular(_)));
        assert_eq!(c.decrypt_name(&dir, &e1).unwrap(), name.as_bytes());
    }
}

#[test]
fn padding_hides_exact_length() {
    let c = cipher();
    let dir = c.root_iv();
    let a = c.encrypt_name(&dir, b"a").unwrap();
    let b = c.encrypt_name(&dir, b"abcdefghijklmno").unwrap();
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), 43);
}

#[test]
fn name_moved_to_other_dir_fails() {
    let c = cipher();
    let other = c.child_dir_iv(&c.root_iv(), b"sub");
    let e = c.encrypt_name(&c.root_iv(), b"secret.txt").unwrap();
    assert_eq!(c.decrypt_name(&other, &e), Err(NameError::Unauthentic));
}

#[test]
fn invalid_names_never_encrypt() {
    let c = cipher();
    let dir = c.root_iv();
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert_eq!(c.encrypt_name(&dir, bad), Err(NameError::Invalid));
    }
    assert_eq!(c.encrypt_name(&dir, &[b'x'; 256]), Err(NameError::TooLong));
}

#[test]
fn long_names_hash() {
    let c = cipher();
    let dir = c.root_iv();
    let long = "é".repeat(127); // 254 bytes
    match c.backing_name(&dir, long.as_bytes()).unwrap() {
        BackingName::Long { entry, full } => {
            assert!(entry.len() <= 47);
            assert_eq!(classify_entry(&entry), EntryKind::Long(&entry));
            assert_eq!(
                classify_entry(&format!("{entry}.name")),
                EntryKind::LongRecord
            );
            assert_eq!(c.decrypt_name(&dir, &full).unwrap(), long.as_bytes());
            assert_eq!(entry, long_entry_name(&full));
        }
        other => panic!("expected a long name, got {other:?}"),
    }
    assert!(matches!(
        c.backing_name(&dir, b"short").unwrap(),
        BackingName::Regular(_)
    ));
}

#[test]
fn classify_foreign() {
    for f in [
        ".stfolder",
        ".stignore",
        "desktop.ini",
        ".DS_Store",
        ".dropbox.cache",
        "abc",
        "x (1)",
    ] {
        assert_eq!(classify_entry(f), EntryKind::Foreign, "{f}");
    }
    assert_eq!(classify_entry("veilfs.conf"), EntryKind::Metadata);
    assert_eq!(classify_entry(DIR_IV_FILE), EntryKind::Metadata);
}

#[test]
fn long_symlink_targets() {
    let c = cipher();
    for len in [1usize, 8, 100, 740] {
        let stored = c.store_symlink_target(&c.root_iv(), &vec![b'x'; len]);
        let StoredTarget::Inline(s) = &stored else {
            panic!("{len}: {stored:?}");
        };
        assert_ne!(s.len(), LONG_TARGET_LINK_LEN, "{len}");
        assert_ne!(s.len() % 4, 1, "no unpadded base64url has this length");
        assert_eq!(long_target_record(s.as_bytes()), None);
    }
    for len in [741usize, 2000, MAX_SYMLINK_TARGET] {
        let target = vec![b'y'; len];
        let StoredTarget::Long { link, sealed } = c.store_symlink_target(&c.root_iv(), &target)
        else {
            panic!("{len}");
        };
        assert_eq!(link.len(), LONG_TARGET_LINK_LEN);
        assert_eq!(classify_entry(&link), EntryKind::LongTargetRecord);
        assert_eq!(long_target_record(link.as_bytes()), Some(link.as_str()));
        assert!(long_target_record_matches(&link, sealed.as_bytes()));
        assert!(sealed.len() <= MAX_LONG_TARGET_RECORD);
        assert_eq!(
            c.decrypt_symlink_target(&c.root_iv(), sealed.as_bytes())
                .unwrap(),
            target
        );
    }
    // Not a record: wrong stem length or alphabet.
    assert_eq!(classify_entry("abc.vlink"), EntryKind::Foreign);
    assert_eq!(long_target_record(b"abc.vlink"), None);
}

#[test]
fn dir_iv_depends_on_parent_and_name() {
    let c = cipher();
    let r = c.root_iv();
    let a = c.child_dir_iv(&r, b"a");
    assert_eq!(a, c.child_dir_iv(&r, b"a"));
    assert_ne!(a, c.child_dir_iv(&r, b"b"));
    assert_ne!(c.child_dir_iv(&a, b"a"), a);
}

#[test]
fn new_dir_ivs_are_unique_and_share_only_their_birth() {
    let c = cipher();
    let r = c.root_iv();
    let a = c.new_dir_iv(&r, b"X");
    let b = c.new_dir_iv(&r, b"X");
    assert_ne!(a, b, "mv X Y; mkdir X: a new IV");
    assert!(same_birth(&a, &b), "two devices creating X");
    assert!(!same_birth(&a, &a));
    let y = c.new_dir_iv(&r, b"Y");
    assert!(!same_birth(&a, &y));
    assert!(!same_birth(&a, &c.new_dir_iv(&a, b"X")));
    assert_eq!(a.0[8..], c.dir_birth_tag(&r, b"X"));
    // The same folder created inside X on each device: one birth.
    assert!(same_birth(
        &c.new_dir_iv(&a, b"Day 1"),
        &c.new_dir_iv(&b, b"Day 1")
    ));
}

#[test]
fn symlink_and_xattr_round_trip() {
    let c = cipher();
    let dir = c.new_dir_iv(&c.root_iv(), b"d");
    let t = c.encrypt_symlink_target(&dir, b"../target/file");
    assert!(!t.contains('/'));
    assert!(c.open_symlink_target(&dir, t.as_bytes()).unwrap().1);
    assert_eq!(
        c.decrypt_symlink_target(&dir, t.as_bytes()).unwrap(),
        b"../target/file"
    );
    let n = c.encrypt_xattr_name(b"comment");
    assert_eq!(n, c.encrypt_xattr_name(b"comment"));
    assert_eq!(
        c.decrypt_xattr_name(&n).unwrap(),
        (b"comment".to_vec(), XattrVersion::V2)
    );
    let id = [7u8; XATTR_ID_LEN];
    let v = c.encrypt_xattr_value(&n, &id, b"value");
    let open = |n: &str, id: &[u8; XATTR_ID_LEN], v: &Vec<u8>| {
        c.decrypt_xattr_value(n, XattrVersion::V2, Some(id), v.clone())
    };
    assert_eq!(open(&n, &id, &v).unwrap(), b"value");
    let n2 = c.encrypt_xattr_name(b"other");
    assert_eq!(open(&n2, &id, &v), Err(NameError::Unauthentic));
}

/// Security review, findings 6 and 10: a symlink target is bound to its
/// directory, an attribute value to its entry, and attribute names are
/// padded; the first version's forms still read.
#[test]
fn targets_and_values_are_bound_and_xattr_names_padded() {
    let c = cipher();
    let a = c.new_dir_iv(&c.root_iv(), b"a");
    let b = c.new_dir_iv(&c.root_iv(), b"b");
    let t = c.encrypt_symlink_target(&a, b"target");
    assert_eq!(
        c.decrypt_symlink_target(&b, t.as_bytes()),
        Err(NameError::Unauthentic),
        "a target copied into another directory"
    );
    // A copy of a's veilfs.diriv made by a sync client has a's birth.
    let a2 = c.new_dir_iv(&c.root_iv(), b"a");
    assert_eq!(
        c.decrypt_symlink_target(&a2, t.as_bytes()).unwrap(),
        b"target"
    );
    // Values moved between entries fail.
    let n = c.encrypt_xattr_name(b"comment");
    let v = c.encrypt_xattr_value(&n, &[1; XATTR_ID_LEN], b"value");
    assert_eq!(
        c.decrypt_xattr_value(&n, XattrVersion::V2, Some(&[2; XATTR_ID_LEN]), v),
        Err(NameError::Unauthentic)
    );
    // Names of 1 and 15 bytes look alike.
    assert_eq!(
        c.encrypt_xattr_name(b"a").len(),
        c.encrypt_xattr_name(b"abcdefghijklmno").len()
    );
    // The first version: unpadded names, values bound to the name only,
    // symlink targets with a constant AD.
    let old = c.encrypt_xattr_name_v1(b"comment");
    assert_ne!(old, n);
    assert_eq!(
        c.decrypt_xattr_name(&old).unwrap(),
        (b"comment".to_vec(), XattrVersion::V1)
    );
    let old_value = c.seal_metadata_with_nonce(
        &[XATTR_VALUE_AD, old.as_bytes()].concat(),
        b"v1",
        [0; NONCE_LEN],
    );
    assert_eq!(
        c.decrypt_xattr_value(&old, XattrVersion::V1, None, old_value)
            .unwrap(),
        b"v1"
    );
    let old_target = B64.encode(c.seal_metadata_with_nonce(SYMLINK_AD, b"t", [0; NONCE_LEN]));
    assert_eq!(
        c.decrypt_symlink_target(&b, old_target.as_bytes()).unwrap(),
        b"t"
    );
}
