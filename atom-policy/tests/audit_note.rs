//! Signed notes and checkpoints against the C2SP signed-note spec example and the
//! golang.org/x/mod/sumdb/note documentation example; hybrid checkpoint signing.
#![allow(clippy::unwrap_used, missing_docs)]

use atom_policy::note::{
    Checkpoint, CheckpointMode, Note, NoteError, NoteSigner, NoteVerifier, TYPE_ED25519,
    TYPE_MLDSA44_COSIGNATURE, cosigned_message, key_id,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// c2sp.org/signed-note, "Verifier keys" / "Example".
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

/// golang.org/x/mod/sumdb/note package documentation example (Ed25519 is deterministic, so
/// signing the same text with the same key must reproduce the signature exactly).
const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIG_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn spec_example_verifies() {
    let v = NoteVerifier::from_vkey(SPEC_VKEY).unwrap();
    assert_eq!(v.name(), "example.com/foo");
    assert_eq!(v.key_id(), 0x530d903a);
    assert_eq!(v.key_type(), TYPE_ED25519);
    assert_eq!(v.to_vkey(), SPEC_VKEY);
    let note = Note::parse(SPEC_NOTE).unwrap();
    assert_eq!(note.text, "This is an example message.\n");
    let ok = note.verify_any(&[v]).unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].name, "example.com/foo");
    assert_eq!(note.to_text(), SPEC_NOTE);
}

#[test]
fn spec_example_tampered_is_rejected_naming_the_key() {
    let v = NoteVerifier::from_vkey(SPEC_VKEY).unwrap();
    let tampered = SPEC_NOTE.replace("example message", "example massage");
    let err = Note::parse(&tampered)
        .unwrap()
        .verify_any(&[v])
        .unwrap_err();
    assert_eq!(
        err,
        NoteError::BadSignature {
            name: "example.com/foo".into(),
            key_id: 0x530d903a,
            key_type: 1
        }
    );
}

#[test]
fn go_signer_key_reproduces_go_signature() {
    let s = NoteSigner::from_signer_key(GO_SKEY).unwrap();
    assert_eq!(s.key_id(), 0xc74f20a3);
    assert_eq!(s.verifier().to_vkey(), GO_VKEY);
    assert_eq!(s.to_signer_key().as_str(), GO_SKEY);
    let signed = Note::sign(GO_TEXT, &[&s], 0).unwrap().to_text();
    assert_eq!(signed, format!("{GO_TEXT}\n{GO_SIG_LINE}"));
    let v = NoteVerifier::from_vkey(GO_VKEY).unwrap();
    Note::parse(&signed).unwrap().verify_all(&[v]).unwrap();
}

#[test]
fn key_id_definition() {
    // The spec's vkey: id = SHA-256(name || 0x0A || 0x01 || pk)[:4].
    let raw = B64
        .decode("AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
        .unwrap();
    assert_eq!(key_id("example.com/foo", raw[0], &raw[1..]), 0x530d903a);
}

#[test]
fn unknown_keys_are_ignored_and_no_known_signature_fails() {
    let other = NoteSigner::ed25519_from_seed("example.com/foo", [3u8; 32]).unwrap();
    let err = Note::parse(SPEC_NOTE)
        .unwrap()
        .verify_any(&[other.verifier()])
        .unwrap_err();
    assert!(matches!(err, NoteError::NoKnownSignature { .. }), "{err}");
}

#[test]
fn malformed_notes_and_keys_name_the_check() {
    assert_eq!(
        Note::parse("text\n\n\u{2014} a AAAAAAA=").unwrap_err(),
        NoteError::MissingFinalNewline
    );
    assert_eq!(
        Note::parse("text\n").unwrap_err(),
        NoteError::MissingSeparator
    );
    assert!(matches!(
        Note::parse("te\u{7}xt\n\n\u{2014} a AAAAAAA=\n").unwrap_err(),
        NoteError::ControlCharacter { offset: 2, .. }
    ));
    assert!(matches!(
        Note::parse("text\n\n- a AAAAAAA=\n").unwrap_err(),
        NoteError::MalformedSignatureLine { line: 1, .. }
    ));
    assert!(matches!(
        NoteVerifier::from_vkey(
            "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
        )
        .unwrap_err(),
        NoteError::KeyIdMismatch {
            stated: 0x530d903b,
            computed: 0x530d903a,
            ..
        }
    ));
    assert!(matches!(
        NoteVerifier::from_vkey("example.com/foo+530d903a+AgAA").unwrap_err(),
        NoteError::UnsupportedType(2)
    ));
    let many: String = (0..65).map(|_| "\u{2014} a AAAAAAA=\n").collect();
    assert!(matches!(
        Note::parse(&format!("t\n\n{many}")).unwrap_err(),
        NoteError::TooManySignatures { count: 65, .. }
    ));
}

fn hybrid_keys(origin: &str) -> (NoteSigner, NoteSigner) {
    (
        NoteSigner::ed25519_from_seed(origin, [42u8; 32]).unwrap(),
        NoteSigner::generate_mldsa44(origin).unwrap(),
    )
}

#[test]
fn hybrid_checkpoint_needs_both_signatures() {
    let origin = "atom.example/audit";
    let (ed, ml) = hybrid_keys(origin);
    let vs = [ed.verifier(), ml.verifier()];
    let cp = Checkpoint::new(origin, 20852163, [7u8; 32]);
    let signed = cp.sign(&[&ed, &ml], 1_679_315_147).unwrap();
    assert_eq!(
        Checkpoint::verify(&signed, &vs, CheckpointMode::Hybrid).unwrap(),
        cp
    );
    // The ML-DSA line carries key id || u64 timestamp || 2420-byte signature.
    let note = Note::parse(&signed).unwrap();
    assert_eq!(note.signatures[1].signature.len(), 8 + 2420);
    assert_eq!(
        u64::from_be_bytes(note.signatures[1].signature[..8].try_into().unwrap()),
        1_679_315_147
    );
    let ok = note.verify_all(&vs).unwrap();
    assert_eq!(ok[1].key_type, TYPE_MLDSA44_COSIGNATURE);
    assert_eq!(ok[1].timestamp, Some(1_679_315_147));

    // Only the Ed25519 signature: hybrid verification names the missing ML-DSA key.
    let classical_only = cp.sign(&[&ed], 0).unwrap();
    assert_eq!(
        Checkpoint::verify(&classical_only, &vs, CheckpointMode::Hybrid).unwrap_err(),
        NoteError::MissingSignature {
            name: origin.into(),
            key_id: ml.key_id(),
            key_type: TYPE_MLDSA44_COSIGNATURE
        }
    );
    // ... but classical mode accepts it.
    Checkpoint::verify(&classical_only, &vs, CheckpointMode::Classical).unwrap();
    // Hybrid mode without an ML-DSA verifier is a configuration error.
    assert!(matches!(
        Checkpoint::verify(&signed, &vs[..1], CheckpointMode::Hybrid).unwrap_err(),
        NoteError::ModeKeys { .. }
    ));
}

#[test]
fn mldsa_cosignature_covers_exactly_the_cosigned_message() {
    let origin = "atom.example/audit";
    let (ed, ml) = hybrid_keys(origin);
    let cp = Checkpoint::new(origin, 5, [1u8; 32]);
    let signed = cp.sign(&[&ed, &ml], 99).unwrap();
    let mut note = Note::parse(&signed).unwrap();
    // Changing the timestamp invalidates the ML-DSA signature.
    note.signatures[1].signature[7] ^= 1;
    let err = note.verify_all(&[ml.verifier()]).unwrap_err();
    assert_eq!(
        err,
        NoteError::BadSignature {
            name: origin.into(),
            key_id: ml.key_id(),
            key_type: TYPE_MLDSA44_COSIGNATURE
        }
    );
    // The signature verifies with pqcrypto directly over the cosigned_message struct.
    let note = Note::parse(&signed).unwrap();
    let sig = &note.signatures[1].signature;
    let msg = cosigned_message(origin, 99, &cp).unwrap();
    use pqcrypto_traits::sign::{DetachedSignature, PublicKey};
    let pk = pqcrypto_mldsa::mldsa44::PublicKey::from_bytes(&ml.verifier().public_key()).unwrap();
    let ds = pqcrypto_mldsa::mldsa44::DetachedSignature::from_bytes(&sig[8..]).unwrap();
    pqcrypto_mldsa::mldsa44::verify_detached_signature(&ds, &msg, &pk).unwrap();
    // Extension lines are not covered by 0x06 (as the spec says) but are by Ed25519.
    let mut with_ext = note.clone();
    with_ext.text = format!("{}ext\n", note.text);
    with_ext.verify_all(&[ml.verifier()]).unwrap();
    assert!(with_ext.verify_all(&[ed.verifier()]).is_err());
}

#[test]
fn tampered_checkpoint_body_fails_both() {
    let origin = "atom.example/audit";
    let (ed, ml) = hybrid_keys(origin);
    let signed = Checkpoint::new(origin, 5, [1u8; 32])
        .sign(&[&ed, &ml], 1)
        .unwrap();
    let tampered = signed.replacen("\n5\n", "\n6\n", 1);
    let err = Checkpoint::verify(
        &tampered,
        &[ed.verifier(), ml.verifier()],
        CheckpointMode::Hybrid,
    )
    .unwrap_err();
    assert!(
        matches!(err, NoteError::BadSignature { key_type: 1, .. }),
        "{err}"
    );
    let err = Note::parse(&tampered)
        .unwrap()
        .verify_all(&[ml.verifier()])
        .unwrap_err();
    assert!(
        matches!(err, NoteError::BadSignature { key_type: 6, .. }),
        "{err}"
    );
}

#[test]
fn mldsa_signer_key_roundtrip() {
    let ml = NoteSigner::generate_mldsa44("atom.example/audit").unwrap();
    let skey = ml.to_signer_key();
    assert!(skey.starts_with(&format!(
        "PRIVATE+KEY+atom.example/audit+{:08x}+",
        ml.key_id()
    )));
    let back = NoteSigner::from_signer_key(&skey).unwrap();
    assert_eq!(back.verifier().to_vkey(), ml.verifier().to_vkey());
    let vk = NoteVerifier::from_vkey(&ml.verifier().to_vkey()).unwrap();
    assert_eq!(vk.key_type(), TYPE_MLDSA44_COSIGNATURE);
    assert_eq!(vk.public_key().len(), 1312);
}
