//! Signed journal heads: the server signs (sequence, head hash) with an Ed25519 key of its own, so
//! that a dump, a copy or a proof of the journal can be checked against the key an operator trusts,
//! as certificate-transparency logs sign their tree heads. The key is made at the first start and
//! kept in the data directory (`signing-key.p8`, PKCS#8, readable by the owner only); its public
//! half is written beside it (`signing-key.pub`, hex) and printed at start.
//!
//! A cluster of nodes on one PostgreSQL journal shares one key (`--signing-key FILE`, the same
//! file on every node): the writer signs each group it appends with it (`GroupSigner`), and a
//! follower applies only groups signed by it.
//!
//! The signed message is the ASCII context `ipledger signed journal head v1`, a zero byte, the
//! sequence (8 bytes, big-endian) and the 32-byte head hash: the context keeps a signature from
//! ever standing for another kind of message.

use super::journal::{GroupSignature, GroupSigner, Hash, Head, hex};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use std::path::{Path, PathBuf};

const CONTEXT: &[u8] = b"ipledger signed journal head v1\0";
pub const KEY_FILE: &str = "signing-key.p8";
pub const PUBLIC_KEY_FILE: &str = "signing-key.pub";

pub type PublicKey = [u8; 32];

/// A journal head with the server's signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedHead {
    pub sequence: u64,
    #[serde(with = "hex_bytes")]
    pub hash: Hash,
    #[serde(with = "hex_bytes")]
    pub public_key: PublicKey,
    #[serde(with = "hex_bytes")]
    pub signature: [u8; 64],
}

fn message(sequence: u64, hash: &Hash) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

impl SignedHead {
    pub fn head(&self) -> Head {
        Head { sequence: self.sequence, hash: self.hash }
    }

    /// Checks the signature, and that it was made by one of `trusted`.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<(), String> {
        if !trusted.contains(&self.public_key) {
            return Err(format!("the head is signed by key {}, which is not a trusted key", hex(&self.public_key)));
        }
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(&message(self.sequence, &self.hash), &self.signature)
            .map_err(|_| format!("the signature of head {} does not verify", self.sequence))
    }
}

const TREE_CONTEXT: &[u8] = b"ipledger signed tree head v1\0";
const COSIGNATURE_CONTEXT: &[u8] = b"ipledger tree head cosignature v1\0";

/// A head of the journal's Merkle tree (`tree`), signed by the server: (size, root, time).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedTreeHead {
    pub tree_size: u64,
    #[serde(with = "hex_bytes")]
    pub root_hash: Hash,
    /// When the server signed it, microseconds since 1970-01-01T00:00:00Z.
    pub time_micros: i64,
    #[serde(with = "hex_bytes")]
    pub public_key: PublicKey,
    #[serde(with = "hex_bytes")]
    pub signature: [u8; 64],
}

fn tree_message(tree_size: u64, root: &Hash, time_micros: i64) -> Vec<u8> {
    let mut m = TREE_CONTEXT.to_vec();
    m.extend_from_slice(&tree_size.to_be_bytes());
    m.extend_from_slice(root);
    m.extend_from_slice(&time_micros.to_be_bytes());
    m
}

/// What a witness signs of a tree head it checked: its size and root (not the server's time).
pub fn cosignature_message(tree_size: u64, root: &Hash) -> Vec<u8> {
    let mut m = COSIGNATURE_CONTEXT.to_vec();
    m.extend_from_slice(&tree_size.to_be_bytes());
    m.extend_from_slice(root);
    m
}

/// Checks an Ed25519 signature of `message` by `key`.
pub fn verify_signature(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> bool {
    UnparsedPublicKey::new(&ED25519, key).verify(message, signature).is_ok()
}

impl SignedTreeHead {
    /// Checks the signature, and that it was made by one of `trusted`.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<(), String> {
        if !trusted.contains(&self.public_key) {
            return Err(format!(
                "the tree head is signed by key {}, which is not a trusted key",
                hex(&self.public_key)
            ));
        }
        let message = tree_message(self.tree_size, &self.root_hash, self.time_micros);
        if verify_signature(&self.public_key, &message, &self.signature) {
            Ok(())
        } else {
            Err(format!("the signature of the tree head of size {} does not verify", self.tree_size))
        }
    }
}

/// The server's signing key (cheap to clone: the key pair is shared).
#[derive(Clone)]
pub struct Signer {
    pair: std::sync::Arc<Ed25519KeyPair>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("public_key", &hex(&self.public_key())).finish()
    }
}

impl Signer {
    /// A key that lives only as long as the process (tests, scratch ledgers).
    pub fn ephemeral() -> Result<Signer, String> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|e| e.to_string())?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
        Ok(Signer { pair: pair.into() })
    }

    /// The key of the data directory `dir`: the file `key_file` when given (the cluster's key,
    /// which must exist), else the directory's own, made on the first start. Either way its
    /// public half is written to the directory's `signing-key.pub`.
    pub fn open(dir: &Path, key_file: Option<&Path>) -> Result<Signer, String> {
        let Some(path) = key_file else { return Signer::load_or_create(dir) };
        let signer = Signer::load(path)?;
        signer.publish(dir)?;
        Ok(signer)
    }

    /// Loads an Ed25519 key in PKCS#8 (DER): as this server writes it, or as
    /// `openssl genpkey -algorithm ed25519 -outform DER` does.
    pub fn load(path: &Path) -> Result<Signer, String> {
        let pkcs8 = std::fs::read(path).map_err(|e| format!("cannot read the signing key {}: {e}", path.display()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|e| format!("{} is not an Ed25519 key in PKCS#8 DER: {e}", path.display()))?;
        Ok(Signer { pair: pair.into() })
    }

    /// Writes the public half beside the data, for operators and `restore --trusted-key`.
    fn publish(&self, dir: &Path) -> Result<(), String> {
        let public = dir.join(PUBLIC_KEY_FILE);
        std::fs::write(&public, format!("{}\n", hex(&self.public_key())))
            .map_err(|e| format!("cannot write {}: {e}", public.display()))
    }

    /// Loads the key of the data directory `dir`, making it on the first start.
    pub fn load_or_create(dir: &Path) -> Result<Signer, String> {
        let path = dir.join(KEY_FILE);
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path)?,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let pair =
            Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| format!("{} is not an Ed25519 key: {e}", path.display()))?;
        let signer = Signer { pair: pair.into() };
        signer.publish(dir)?;
        Ok(signer)
    }

    /// Makes a new key in `path` (which must not exist; readable by its owner only) and writes its
    /// public half beside it (`path` with `.pub` added): a witness's key, or a cluster's.
    pub fn create_at(path: &Path) -> Result<Signer, String> {
        let pkcs8 = create(&path.to_path_buf())?;
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| format!("the new key: {e}"))?;
        let signer = Signer { pair: pair.into() };
        let mut public = path.as_os_str().to_owned();
        public.push(".pub");
        std::fs::write(&public, format!("{}\n", hex(&signer.public_key())))
            .map_err(|e| format!("cannot write {}: {e}", PathBuf::from(public).display()))?;
        Ok(signer)
    }

    pub fn public_key(&self) -> PublicKey {
        self.pair.public_key().as_ref().try_into().expect("an Ed25519 public key has 32 bytes")
    }

    pub fn sign(&self, head: Head) -> SignedHead {
        let signature = self.pair.sign(&message(head.sequence, &head.hash));
        SignedHead {
            sequence: head.sequence,
            hash: head.hash,
            public_key: self.public_key(),
            signature: signature.as_ref().try_into().expect("an Ed25519 signature has 64 bytes"),
        }
    }
}

impl Signer {
    /// Signs the tree head (size, root) at `time_micros`.
    pub fn sign_tree(&self, tree_size: u64, root_hash: Hash, time_micros: i64) -> SignedTreeHead {
        let signature = self.pair.sign(&tree_message(tree_size, &root_hash, time_micros));
        SignedTreeHead {
            tree_size,
            root_hash,
            time_micros,
            public_key: self.public_key(),
            signature: signature.as_ref().try_into().expect("an Ed25519 signature has 64 bytes"),
        }
    }

    /// Signs a tree head as a witness does (`cosignature_message`).
    pub fn cosign(&self, tree_size: u64, root_hash: &Hash) -> [u8; 64] {
        let signature = self.pair.sign(&cosignature_message(tree_size, root_hash));
        signature.as_ref().try_into().expect("an Ed25519 signature has 64 bytes")
    }
}

impl GroupSigner for Signer {
    fn sign_group(&self, last: Head) -> GroupSignature {
        let signed = self.sign(last);
        GroupSignature { sequence: signed.sequence, public_key: signed.public_key, signature: signed.signature }
    }
}

impl GroupSignature {
    /// Checks that this signs the entry `head` (its sequence and hash) under `key`.
    pub fn verify(&self, head: Head, key: &PublicKey) -> Result<(), String> {
        let signed = SignedHead {
            sequence: head.sequence,
            hash: head.hash,
            public_key: self.public_key,
            signature: self.signature,
        };
        if self.sequence != head.sequence {
            return Err(format!("a signature of entry {} offered for entry {}", self.sequence, head.sequence));
        }
        signed.verify(std::slice::from_ref(key))
    }
}

/// Writes a new key, readable by its owner only, durably, before it is used.
fn create(path: &PathBuf) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|e| e.to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(pkcs8.as_ref())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "made a signing key");
    Ok(pkcs8.as_ref().to_vec())
}

/// A public key given as 64 hex digits, or a file holding them (`signing-key.pub`).
pub fn parse_public_key(text_or_path: &str) -> Result<PublicKey, String> {
    let text = match std::fs::read_to_string(text_or_path) {
        Ok(contents) => contents,
        Err(_) => text_or_path.to_owned(),
    };
    let text = text.trim();
    let bytes = from_hex(text).ok_or_else(|| format!("{text_or_path}: not 64 hex digits or a file holding them"))?;
    bytes.try_into().map_err(|_| format!("{text_or_path}: an Ed25519 public key has 32 bytes"))
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        super::from_hex(&text)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| serde::de::Error::custom(format!("expected {N} bytes in hex")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_verifies_under_its_key_only_and_not_once_changed() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::load_or_create(dir.path()).unwrap();
        let again = Signer::load_or_create(dir.path()).unwrap();
        assert_eq!(signer.public_key(), again.public_key(), "the key is kept");
        let published = parse_public_key(dir.path().join(PUBLIC_KEY_FILE).to_str().unwrap()).unwrap();
        assert_eq!(published, signer.public_key());
        let signed = signer.sign(Head { sequence: 7, hash: [3; 32] });
        signed.verify(&[published]).unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        assert_eq!(serde_json::from_str::<SignedHead>(&json).unwrap(), signed);
        let other = Signer::ephemeral().unwrap();
        assert!(signed.verify(&[other.public_key()]).is_err(), "an untrusted key");
        let forged = SignedHead { sequence: 8, ..signed.clone() };
        assert!(forged.verify(&[published]).is_err(), "another sequence");
        let forged = SignedHead { public_key: other.public_key(), ..signed };
        assert!(forged.verify(&[other.public_key()]).is_err(), "a key swapped in");
        let tree = signer.sign_tree(9, [4; 32], 1_700_000_000_000_000);
        tree.verify(&[published]).unwrap();
        assert!(SignedTreeHead { time_micros: 1, ..tree.clone() }.verify(&[published]).is_err(), "another time");
        assert!(SignedTreeHead { tree_size: 8, ..tree.clone() }.verify(&[published]).is_err(), "another size");
        let cosigned = other.cosign(9, &[4; 32]);
        assert!(verify_signature(&other.public_key(), &cosignature_message(9, &[4; 32]), &cosigned));
        assert!(!verify_signature(&other.public_key(), &cosignature_message(9, &[5; 32]), &cosigned));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
    }
}
