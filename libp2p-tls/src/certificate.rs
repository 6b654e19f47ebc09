//! The libp2p certificate: making ours, checking the remote's. No I/O and no clock: the time
//! to check validity against comes in as an argument.
//!
//! The certificate is self-signed with a key of its own (ECDSA P-256 for ours), unrelated to
//! the host's identity key. The identity lives in the libp2p public key extension, OID
//! 1.3.6.1.4.1.53594.1.1, whose value is the DER of
//!
//! ```text
//! SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }
//! ```
//!
//! `publicKey` is the identity key as the libp2p `PublicKey` protobuf, `signature` is the
//! identity key's signature over `"libp2p-tls-handshake:" ++ the certificate's
//! SubjectPublicKeyInfo DER`.

use std::time::{SystemTime, UNIX_EPOCH};

use libp2p_core::{Keypair, PeerId, PublicKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::SignatureScheme;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::{CertificateError, GenerateError};

/// The object identifier of the libp2p public key extension, as its arcs.
pub const EXTENSION_OID: [u64; 9] = [1, 3, 6, 1, 4, 1, 53594, 1, 1];

/// What the identity key signs: this prefix, then the certificate's SubjectPublicKeyInfo DER.
pub const SIGNATURE_PREFIX: &[u8] = b"libp2p-tls-handshake:";

/// The protobuf `KeyType` numbers libp2p knows (RSA, Ed25519, Secp256k1, ECDSA).
const KNOWN_KEY_TYPES: std::ops::RangeInclusive<i32> = 0..=3;

/// A certificate and its private key, ready to present in handshakes.
pub struct Certificate {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) key: PrivatePkcs8KeyDer<'static>,
}

impl Clone for Certificate {
    fn clone(&self) -> Self {
        Certificate {
            der: self.der.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// A fresh self-signed certificate for `identity`: a new ECDSA P-256 key signs it, and the
    /// libp2p extension (marked critical) binds that key to `identity`. Valid from 1975 to
    /// 4096, as the spec's own vectors are: a clock that is off cannot make it fail, and the
    /// binding is re-made by every new [`crate::Tls`].
    pub fn generate(identity: &Keypair) -> Result<Certificate, GenerateError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .custom_extensions
            .push(signed_key_extension(identity, &key.public_key_der())?);
        let cert = params.self_signed(&key)?;
        Ok(Certificate {
            der: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// A certificate kept from elsewhere: its DER and its private key as PKCS#8 DER. The
    /// certificate is presented as it is, unchecked (the remote checks it): use it for a
    /// certificate made with [`signed_key_extension`], or to test how peers refuse bad ones.
    pub fn from_der(certificate: Vec<u8>, pkcs8_private_key: Vec<u8>) -> Certificate {
        Certificate {
            der: CertificateDer::from(certificate),
            key: PrivatePkcs8KeyDer::from(pkcs8_private_key),
        }
    }

    /// The certificate's DER.
    pub fn der(&self) -> &[u8] {
        self.der.as_ref()
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// The libp2p extension for a certificate whose SubjectPublicKeyInfo DER is `spki`, signed by
/// `identity`, as an rcgen custom extension marked critical.
pub fn signed_key_extension(
    identity: &Keypair,
    spki: &[u8],
) -> Result<rcgen::CustomExtension, GenerateError> {
    let mut message = Vec::with_capacity(SIGNATURE_PREFIX.len() + spki.len());
    message.extend_from_slice(SIGNATURE_PREFIX);
    message.extend_from_slice(spki);
    let signature = identity.sign(&message)?;
    let content = encode_signed_key(&identity.public().encode_protobuf(), &signature);
    let mut extension = rcgen::CustomExtension::from_oid_content(&EXTENSION_OID, content);
    extension.set_criticality(true);
    Ok(extension)
}

/// The DER of `SignedKey { publicKey, signature }`.
pub fn encode_signed_key(public_key: &[u8], signature: &[u8]) -> Vec<u8> {
    yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_bytes(public_key);
            writer.next().write_bytes(signature);
        })
    })
}

/// `(publicKey, signature)` of a DER `SignedKey`; `None` if it is not one (strict DER, no
/// trailing bytes).
pub fn decode_signed_key(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    yasna::parse_der(der, |reader| {
        reader.read_sequence(|reader| {
            let public_key = reader.next().read_bytes()?;
            let signature = reader.next().read_bytes()?;
            Ok((public_key, signature))
        })
    })
    .ok()
}

/// The libp2p `PublicKey` protobuf, read only for its key type: decoding the key itself is
/// libp2p-identity's job, which does not say when a type is merely unknown.
#[derive(Clone, PartialEq, prost::Message)]
struct PublicKeyProto {
    #[prost(int32, required, tag = "1")]
    key_type: i32,
    #[prost(bytes = "vec", required, tag = "2")]
    data: Vec<u8>,
}

/// A remote certificate that passed every check: whose it is.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerCertificate {
    /// The remote's identity key, from the extension.
    pub public_key: PublicKey,
    /// The remote's peer id, derived from that key.
    pub peer_id: PeerId,
}

/// Checks a remote's certificate by every rule of the libp2p TLS spec, at time `now`: a
/// well-formed X.509 certificate, valid at `now`, with a good self-signature, no critical
/// extension but ours, no unique identifiers, and exactly one libp2p extension whose
/// identity key signed the certificate key. Returns the identity.
pub fn verify_certificate(
    der: &[u8],
    now: SystemTime,
) -> Result<PeerCertificate, CertificateError> {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    verify_at(der, now)
}

/// [`verify_certificate`] at `now` seconds since the Unix epoch.
pub(crate) fn verify_at(der: &[u8], now: i64) -> Result<PeerCertificate, CertificateError> {
    let cert = parse(der)?;
    if cert.tbs_certificate.issuer_uid.is_some() || cert.tbs_certificate.subject_uid.is_some() {
        return Err(CertificateError::UniqueIdentifier);
    }
    let (public_key, signature) = extension(&cert)?;

    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    if now < not_before {
        return Err(CertificateError::NotYetValid { not_before });
    }
    let not_after = validity.not_after.timestamp();
    if now > not_after {
        return Err(CertificateError::Expired { not_after });
    }

    cert.verify_signature(None).map_err(|e| match e {
        x509_parser::error::X509Error::SignatureUnsupportedAlgorithm => {
            CertificateError::UnsupportedSignatureAlgorithm
        }
        _ => CertificateError::BadSelfSignature,
    })?;

    let mut message = Vec::with_capacity(SIGNATURE_PREFIX.len() + cert.public_key().raw.len());
    message.extend_from_slice(SIGNATURE_PREFIX);
    message.extend_from_slice(cert.public_key().raw);
    if !public_key.verify(&message, &signature) {
        return Err(CertificateError::BadExtensionSignature);
    }
    Ok(PeerCertificate {
        peer_id: public_key.to_peer_id(),
        public_key,
    })
}

/// The peer id of a certificate already checked by [`verify_at`] (the handshake's verifier
/// did): its extension is read again, its signatures are not.
pub(crate) fn peer_id_of_verified(der: &[u8]) -> Result<PeerId, CertificateError> {
    let cert = parse(der)?;
    Ok(extension(&cert)?.0.to_peer_id())
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertificateError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(CertificateError::Malformed),
    }
}

/// The identity key and signature of the one libp2p extension; refuses unknown critical
/// extensions on the way.
fn extension(cert: &X509Certificate<'_>) -> Result<(PublicKey, Vec<u8>), CertificateError> {
    let mut found = None;
    for ext in cert.extensions() {
        let ours = ext
            .oid
            .iter()
            .is_some_and(|arcs| arcs.eq(EXTENSION_OID.iter().copied()));
        if ours {
            if found.is_some() {
                return Err(CertificateError::DuplicateExtension);
            }
            found = Some(ext.value);
        } else if ext.critical {
            return Err(CertificateError::UnknownCriticalExtension {
                oid: ext.oid.to_id_string(),
            });
        }
    }
    let value = found.ok_or(CertificateError::MissingExtension)?;
    let (key_bytes, signature) =
        decode_signed_key(value).ok_or(CertificateError::MalformedExtension)?;
    let proto = <PublicKeyProto as prost::Message>::decode(key_bytes.as_slice())
        .map_err(|_| CertificateError::MalformedExtension)?;
    if !KNOWN_KEY_TYPES.contains(&proto.key_type) {
        return Err(CertificateError::UnsupportedKeyType {
            key_type: proto.key_type,
        });
    }
    let public_key = PublicKey::try_decode_protobuf(&key_bytes)
        .map_err(|_| CertificateError::InvalidPublicKey)?;
    Ok((public_key, signature))
}

/// The TLS 1.3 signature schemes we accept in a `CertificateVerify`, best first: those ring
/// verifies and TLS 1.3 allows.
pub const SIGNATURE_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
];

/// Checks a TLS 1.3 `CertificateVerify`: `signature` by the key of the certificate `der`
/// over `message`, in `scheme`. An ECDSA scheme only verifies with a key on its own curve
/// (ring refuses a point of another curve).
pub fn verify_handshake_signature(
    der: &[u8],
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CertificateError> {
    use ring::signature as sig;
    let algorithm: &dyn sig::VerificationAlgorithm = match scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        SignatureScheme::ED25519 => &sig::ED25519,
        SignatureScheme::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return Err(CertificateError::UnsupportedSignatureScheme { scheme }),
    };
    let cert = parse(der)?;
    sig::UnparsedPublicKey::new(algorithm, &cert.public_key().subject_public_key.data)
        .verify(message, signature)
        .map_err(|_| CertificateError::BadHandshakeSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAR_PAST: i64 = 0; // 1970, before the vectors' 1975
    const NOW: i64 = 1_800_000_000; // 2027

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    // The libp2p TLS spec's test vectors (tls/tls.md, "Test vectors").
    const ED25519_CERT: &str = "308201ae30820156a0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea37c307a3078060a2b0601040183a25a0101046a3068042408011220a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b90440d90d2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a435519941cac215a8207792e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a06082a8648ce3d0403020346003043021f50f6b6c52711a881778718238f650c9fb48943ae6ee6d28427dc6071ae55e702203625f116a7a454db9c56986c82a25682f7248ea1cb764d322ea983ed36a31b77";
    const ECDSA_CERT: &str = "308201f63082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f2044730450220064ea8124774caf8f50e57f436aa62350ce652418c019df5d98a3ac666c9386a022100aa59d704a931b5f72fb9222cb6cc51f954d04a4e2e5450f8805fe8918f71eaae300a06082a8648ce3d04030203470030440220799395b0b6c1e940a7e4484705f610ab51ed376f19ff9d7c16757cfbf61b8d4302206205c03fbb0f95205c779be86581d3e31c01871ad5d1f3435bcf375cb0e5088a";
    const SECP256K1_CERT: &str = "308201ba3082015fa0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea38184308181307f060a2b0601040183a25a01010471306f0425080212210206dc6968726765b820f050263ececf7f71e4955892776c0970542efd689d2382044630440220145e15a991961f0d08cd15425bb95ec93f6ffa03c5a385eedc34ecf464c7a8ab022026b3109b8a3f40ef833169777eb2aa337cfb6282f188de0666d1bcec2a4690dd300a06082a8648ce3d0403020349003046022100e1a217eeef9ec9204b3f774a08b70849646b6a1e6b8b27f93dc00ed58545d9fe022100b00dafa549d0f03547878338c7b15e7502888f6d45db387e5ae6b5d46899cef0";
    const INVALID_CERT: &str = "308201f73082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f204473045022100bb6e03577b7cc7a3cd1558df0da2b117dfdcc0399bc2504ebe7de6f65cade72802206de96e2a5be9b6202adba24ee0362e490641ac45c240db71fe955f2c5cf8df6e300a06082a8648ce3d0403020348003045022100e847f267f43717358f850355bdcabbefb2cfbf8a3c043b203a14788a092fe8db022027c1d04a2d41fd6b57a7e8b3989e470325de4406e52e084e34a3fd56eef0d0df";

    #[test]
    fn spec_vectors() {
        for (cert, peer) in [
            (
                ED25519_CERT,
                "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv",
            ),
            (ECDSA_CERT, "QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE"),
            (
                SECP256K1_CERT,
                "16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs",
            ),
        ] {
            let got = verify_at(&hex(cert), NOW).expect("a valid spec vector");
            assert_eq!(got.peer_id.to_string(), peer);
            assert_eq!(peer_id_of_verified(&hex(cert)).unwrap().to_string(), peer);
        }
        assert_eq!(
            verify_at(&hex(INVALID_CERT), NOW),
            Err(CertificateError::BadExtensionSignature)
        );
        // The vectors are valid from 1975-01-01 13:00 UTC on.
        assert!(matches!(
            verify_at(&hex(ED25519_CERT), FAR_PAST),
            Err(CertificateError::NotYetValid {
                not_before: 157_813_200
            })
        ));
    }

    fn keys() -> Vec<(&'static str, Keypair)> {
        let rsa = libp2p_core::testkit::rsa_keypair();
        vec![
            ("ed25519", Keypair::generate_ed25519()),
            ("secp256k1", Keypair::generate_secp256k1()),
            ("ecdsa", Keypair::generate_ecdsa()),
            ("rsa", rsa),
        ]
    }

    #[test]
    fn roundtrip_for_every_key_type() {
        for (name, key) in keys() {
            let cert = Certificate::generate(&key).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = verify_at(cert.der(), NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.peer_id, key.public().to_peer_id(), "{name}");
            assert_eq!(got.public_key, key.public(), "{name}");
            // Another identity's certificate is not this one's.
            let other = Certificate::generate(&Keypair::generate_ed25519()).unwrap();
            assert_ne!(verify_at(other.der(), NOW).unwrap().peer_id, got.peer_id);
        }
    }

    #[test]
    fn signed_key_encoding() {
        let der = encode_signed_key(b"key", b"sig");
        // SEQUENCE { OCTET STRING "key", OCTET STRING "sig" }
        assert_eq!(
            der,
            [0x30, 10, 4, 3, b'k', b'e', b'y', 4, 3, b's', b'i', b'g']
        );
        assert_eq!(
            decode_signed_key(&der),
            Some((b"key".to_vec(), b"sig".to_vec()))
        );
        // Trailing bytes, truncation, wrong tags, a third field: refused.
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(decode_signed_key(&trailing), None);
        assert_eq!(decode_signed_key(&der[..der.len() - 1]), None);
        assert_eq!(decode_signed_key(&[0x31, 0]), None);
        let three = [0x30, 6, 4, 1, 1, 4, 1, 2, 4, 1, 3];
        assert_eq!(decode_signed_key(&three[..]), None);
        // Non-minimal (BER) lengths are not DER.
        assert_eq!(decode_signed_key(&[0x30, 0x81, 4, 4, 0, 4, 0]), None);
    }

    #[test]
    fn handshake_signatures() {
        let cert = Certificate::generate(&Keypair::generate_ed25519()).unwrap();
        let key = rustls::crypto::ring::sign::any_supported_type(&cert.private_key()).expect("key");
        let signer = key
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .expect("P-256 signer");
        let signature = signer.sign(b"transcript").unwrap();
        let check =
            |scheme, msg: &[u8]| verify_handshake_signature(cert.der(), scheme, msg, &signature);
        assert_eq!(
            check(SignatureScheme::ECDSA_NISTP256_SHA256, b"transcript"),
            Ok(())
        );
        assert_eq!(
            check(SignatureScheme::ECDSA_NISTP256_SHA256, b"transcripT"),
            Err(CertificateError::BadHandshakeSignature)
        );
        // A P-256 key cannot pass for P-384, nor for Ed25519.
        assert_eq!(
            check(SignatureScheme::ECDSA_NISTP384_SHA384, b"transcript"),
            Err(CertificateError::BadHandshakeSignature)
        );
        assert_eq!(
            check(SignatureScheme::ED25519, b"transcript"),
            Err(CertificateError::BadHandshakeSignature)
        );
        assert_eq!(
            check(SignatureScheme::RSA_PKCS1_SHA256, b"transcript"),
            Err(CertificateError::UnsupportedSignatureScheme {
                scheme: SignatureScheme::RSA_PKCS1_SHA256
            })
        );
    }
}
