//! A hostile backup server with an ordinary enrolled certificate: what it registers cannot
//! land in another tenant's container, name another tenant's seed, or learn who owns one.
//! Real coordinator, real certificates, mTLS on loopback.

use seedship_e2e::{Cluster, TEST_REPOSITORY_ID, seed_request};
use seedship_proto::client;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_chooses_each_seeds_import_container() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let (alice, mallory) = (c.issue("source", "alice-fs")?, c.issue("source", "mallory-fs")?);
    let mut a = client::seeds(c.connect(&alice).await?);
    let mut m = client::seeds(c.connect(&mallory).await?);

    // Alice's seed: the coordinator chooses its container from the seed's id.
    let sa = a.register_seed(seed_request("job-alice")).await?.into_inner().seed.unwrap();
    assert_eq!(sa.container, format!("import-{}", sa.seed_id));

    // Mallory tries to land in Alice's import container, her vault, a group vault, or a name
    // outside the import prefix: each is refused, naming the field.
    let mine = |job: &str, container: &str| {
        let mut r = seed_request(job);
        r.container = container.into();
        r.repository_id = "ef".repeat(16);
        r
    };
    for (i, target) in [sa.container.as_str(), "vault-alice-fs", "vaultgroup-finance", "seed-import", "import-"]
        .into_iter()
        .enumerate()
    {
        let e = m.register_seed(mine(&format!("job-m{i}"), target)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{target}: {e:?}");
        assert!(e.message().contains("container"), "{target}: {}", e.message());
    }
    // A suggestion inside the prefix that nobody uses is taken; the same one again is not.
    let sm = m.register_seed(mine("job-m-ok", "import-mallory-01")).await?.into_inner().seed.unwrap();
    assert_eq!(sm.container, "import-mallory-01");
    let mut taken = seed_request("job-a2");
    taken.container = "import-mallory-01".into();
    let e = a.register_seed(taken).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // A job name that is another seed's id (seeds are looked up by id or job name) is refused.
    let e = m.register_seed(mine(&sa.seed_id, "")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("job_name"), "{}", e.message());

    // Taking Alice's job name: ALREADY_EXISTS, without her seed id or name.
    let e = m.register_seed(mine("job-alice", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(!e.message().contains(&sa.seed_id) && !e.message().contains("alice-fs"), "{}", e.message());

    // Alice registering her own seed again is idempotent, with the container as chosen.
    let again = a.register_seed(seed_request("job-alice")).await?.into_inner();
    assert!(!again.created);
    assert_eq!(again.seed.unwrap().container, sa.container);
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_seeds_under_way_are_of_one_repository() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let fs = c.issue("source", "fs01")?;
    let mut s = client::seeds(c.connect(&fs).await?);
    s.register_seed(seed_request("job-one")).await?;
    // The same repository (a re-seed of it) is fine; another repository is refused while the
    // first is under way, since both would seed one vault with different keys.
    s.register_seed(seed_request("job-two")).await?;
    let mut other = seed_request("job-three");
    other.repository_id = "01".repeat(16);
    assert_ne!(other.repository_id, TEST_REPOSITORY_ID);
    let e = s.register_seed(other).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("another repository under way"), "{}", e.message());
    // Sizes beyond what can be stored are refused, not stored negative.
    let mut huge = seed_request("job-huge");
    huge.total_bytes = u64::MAX;
    let e = s.register_seed(huge).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("total_bytes"), "{}", e.message());
    c.finish()
}
