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

/// A seed whose manifest names files outside its staging set (the station's own private key,
/// `/etc/shadow`, or a link out of the set): the station opens none of them, copies nothing,
/// and the refusal sent back quotes no fact about those files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_station_opens_nothing_outside_the_staging_set() -> anyhow::Result<()> {
    use seedship_e2e::prep::{copy_agent, image, station, text};
    use seedship_repo::manifest::{ManifestFile, SeedManifest, hash_file};
    let mut c = Cluster::start()?;
    let (mallory, ops) = (c.issue("source", "mallory-fs")?, c.issue("operator", "alice")?);
    let (cfg, disks) = station(&c, "st-iso", "")?;
    let key = c.pki.join("st-iso.key");
    let (key_size, key_sha, key_md5) = hash_file(&key)?;
    let outside = c.path("outside.bin");
    std::fs::write(&outside, b"a file of the station's, outside any staging set")?;
    let (o_size, o_sha, o_md5) = hash_file(&outside)?;
    let entry = |path: &str, size: u64, sha: &str, md5: &str| ManifestFile {
        path: path.into(),
        size,
        sha256: sha.into(),
        md5: md5.into(),
    };
    let id = "ab".repeat(32);
    let cases: Vec<(&str, Vec<ManifestFile>)> = vec![
        ("dotdot", vec![entry("../pki/st-iso.key", key_size, &key_sha, &key_md5)]),
        ("absolute", vec![entry("/etc/shadow", 1, &"0".repeat(64), &"0".repeat(32))]),
        ("link", vec![entry(&format!("data/ab/{id}"), o_size, &o_sha, &o_md5)]),
    ];
    let mut s = client::seeds(c.connect(&mallory).await?);
    let mut op = client::operator(c.connect(&ops).await?);
    c.allow_error("staging set refused");
    for (name, files) in cases {
        let staging = c.path(&format!("evil-{name}"));
        std::fs::create_dir_all(staging.join("data/ab"))?;
        std::os::unix::fs::symlink(&outside, staging.join(format!("data/ab/{id}")))?;
        let m = SeedManifest::new(files);
        std::fs::write(staging.join("manifest.json"), serde_json::to_vec(&m)?)?;
        let mut r = seed_request(&format!("job-{name}"));
        r.staging_location = staging.display().to_string();
        r.manifest_root = m.root.clone();
        s.register_seed(r).await?;
        op.allow_virtual_station(seedship_proto::pb::AllowVirtualStationRequest {
            request_id: seedship_e2e::rid(),
            seed: format!("job-{name}"),
            reason: "test machine is a VM".into(),
        })
        .await?;
        let img = image(&disks, &format!("{name}.img"), 64 << 20);
        let out = c.run(&format!("copy-{name}"), &mut copy_agent(&cfg))?;
        let seed = op
            .get_seed(seedship_proto::pb::GetSeedRequest { seed: format!("job-{name}") })
            .await?
            .into_inner()
            .seed
            .unwrap();
        assert_eq!(seed.state, seedship_proto::pb::SeedState::Failed as i32, "{name}: {seed:?}\n{}", text(&out));
        let why = seed.state_reason;
        assert!(why.contains("refused"), "{name}: {why}");
        // The staging folder's own path is no fact about a file outside (its random name may
        // hold the digits of a size); sizes are compared as whole numbers.
        let said = why.replace(&staging.display().to_string(), "<staging>");
        for fact in [key_sha.as_str(), key_md5.as_str(), o_sha.as_str()] {
            assert!(!said.contains(fact), "{name}: the reason quotes a fact about a file outside: {why}");
        }
        let numbers: Vec<&str> = said.split(|ch: char| !ch.is_ascii_digit()).filter(|n| !n.is_empty()).collect();
        for size in [key_size.to_string(), o_size.to_string()] {
            assert!(!numbers.contains(&size.as_str()), "{name}: the reason quotes the size of a file outside: {why}");
        }
        // Nothing was written to the disk: it is still all zeros.
        let bytes = std::fs::read(&img)?;
        assert!(bytes.iter().all(|b| *b == 0), "{name}: the disk was written");
        std::fs::remove_file(&img)?;
    }
    // Listing her own seeds gives Mallory the same reasons, and no more.
    let own = s.list_own_seeds(seedship_proto::pb::ListOwnSeedsRequest {}).await?.into_inner().seeds;
    assert!(own.iter().all(|x| !x.state_reason.contains(&key_sha)), "{own:?}");
    c.finish()
}

/// A staging location outside the station's allow-list is not read: the work goes back to
/// the queue with the reason, and the seed is not failed (another station may read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_location_outside_the_stations_roots_is_not_read() -> anyhow::Result<()> {
    use seedship_e2e::prep::{image, station};
    let mut c = Cluster::start()?;
    let (fs, ops) = (c.issue("source", "fs01")?, c.issue("operator", "alice")?);
    std::fs::create_dir_all(c.path("shares"))?;
    let roots = format!("staging_roots = [\"{}\"]\n", c.path("shares").display());
    let (cfg, disks) = station(&c, "st-roots", &roots)?;
    image(&disks, "d.img", 64 << 20);
    let elsewhere = c.path("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;
    let mut r = seed_request("job-elsewhere");
    r.staging_location = elsewhere.display().to_string();
    client::seeds(c.connect(&fs).await?).register_seed(r).await?;
    let mut op = client::operator(c.connect(&ops).await?);
    op.allow_virtual_station(seedship_proto::pb::AllowVirtualStationRequest {
        request_id: seedship_e2e::rid(),
        seed: "job-elsewhere".into(),
        reason: "test machine is a VM".into(),
    })
    .await?;
    c.allow_error("staging_roots");
    let pid = c.spawn("copy-roots", &mut seedship_e2e::prep::copy_agent(&cfg))?;
    let why = seedship_e2e::wait_for_async("the release", std::time::Duration::from_secs(20), || {
        let mut op = op.clone();
        async move {
            let d = op.get_seed(seedship_proto::pb::GetSeedRequest { seed: "job-elsewhere".into() }).await.ok()?;
            let events = d.into_inner().history;
            events.iter().find(|e| e.reason.contains("staging_roots")).map(|e| e.reason.clone())
        }
    })
    .await?;
    assert!(why.contains("not under one of this station's staging_roots"), "{why}");
    let _ = c.wait_exit(pid, std::time::Duration::from_secs(20));
    let seed = op.get_seed(seedship_proto::pb::GetSeedRequest { seed: "job-elsewhere".into() }).await?.into_inner();
    assert_ne!(seed.seed.unwrap().state, seedship_proto::pb::SeedState::Failed as i32);
    c.finish()
}

/// The coordinator's database (every tenant's records, sealed drive keys) and its WAL files
/// are readable by the coordinator's user only; so is a staging set's key file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_key_files_are_private() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SQLite's files (PostgreSQL keeps its own, under its server's rules).
    let mut c = Cluster::start_with(seedship_e2e::Options { postgres: false, ..Default::default() })?;
    let fs = c.issue("source", "fs01")?;
    client::seeds(c.connect(&fs).await?).register_seed(seed_request("job-modes")).await?;
    for f in ["coordinator.db", "coordinator.db-wal", "coordinator.db-shm"] {
        let mode = std::fs::metadata(c.path(f))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let corpus = c.path("corpus");
    std::fs::create_dir_all(&corpus)?;
    std::fs::write(corpus.join("a.txt"), b"a")?;
    let staging = c.path("staging");
    let o = c.run("backup", &mut seedship_e2e::backup_cmd(c.dir.path(), &staging, "job-m", &[&corpus], None)?)?;
    assert!(o.status.success(), "{}", seedship_e2e::prep::text(&o));
    let mode = std::fs::metadata(staging.join("keys/key.json"))?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "keys/key.json");
    c.finish()
}
