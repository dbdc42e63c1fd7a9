//! Blob storage against Azurite: Shared Key signing, and container-scoped SAS tokens (what an
//! agent gets instead of the account key).

use seedship_azure::blob::{BlobAuth, BlobStore, container_sas};
use seedship_e2e::azure::{ACCOUNT, ACCOUNT_KEY, Azurite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_key_and_container_scoped_sas_against_azurite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let az = Azurite::start(dir.path())?;
    let owner = az.blobs()?;
    owner.ensure_container("vault-a").await?;
    owner.ensure_container("vault-b").await?;
    owner.ensure_container("vault-a").await?; // exists: fine

    // A wrong key is refused by the service.
    let wrong = BlobStore::new(
        &format!("{}/{ACCOUNT}", az.url),
        BlobAuth::SharedKey { account: ACCOUNT.into(), key: "d3Jvbmcga2V5".into() },
    )?;
    let e = wrong.list("vault-a").await.unwrap_err();
    assert!(matches!(e, seedship_azure::blob::BlobError::Service { status: 403, .. }), "{e}");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let sas = container_sas(ACCOUNT, ACCOUNT_KEY, "vault-a", "cw", now + 600)?;
    let agent = BlobStore::new(&format!("{}/{ACCOUNT}", az.url), BlobAuth::Sas(sas))?;
    // Create and write in its container.
    agent.stage_block("vault-a", "data/x", b"0001", b"hello".to_vec()).await?;
    agent.commit("vault-a", "data/x", vec![b"0001".to_vec()], None).await?;
    assert_eq!(owner.download("vault-a", "data/x").await?, b"hello");
    // No read or list with "cw", and nothing in another container.
    assert!(agent.download("vault-a", "data/x").await.is_err(), "no read permission");
    let e = agent.stage_block("vault-b", "data/x", b"0001", b"x".to_vec()).await.unwrap_err();
    assert!(matches!(e, seedship_azure::blob::BlobError::Service { status: 403, .. }), "{e}");
    // An expired token is refused.
    let old = container_sas(ACCOUNT, ACCOUNT_KEY, "vault-a", "racwl", now - 60)?;
    let late = BlobStore::new(&format!("{}/{ACCOUNT}", az.url), BlobAuth::Sas(old))?;
    assert!(late.list("vault-a").await.is_err());
    // A read-list token reads.
    let r = container_sas(ACCOUNT, ACCOUNT_KEY, "vault-a", "rl", now + 600)?;
    let reader = BlobStore::new(&format!("{}/{ACCOUNT}", az.url), BlobAuth::Sas(r))?;
    assert_eq!(reader.list("vault-a").await?.len(), 1);
    assert_eq!(reader.download("vault-a", "data/x").await?, b"hello");
    Ok(())
}
