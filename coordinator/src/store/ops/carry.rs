//! How an operation's arguments reach the writer thread or a read connection: each is
//! *carried* as an owned value into the closure (`'static`, `Send`), then *lent* to the
//! operation's function as the type that function takes (`&str` from a `String`, `&[T]` from a
//! `Vec<T>`, `&T` from a `T`, small values as they are). The `impl_sqlite` macro uses both for
//! every operation of `store_operations`, so no operation is forwarded by hand.

use std::sync::Arc;

use seedship_proto::identity::{Role, SpiffeId};

use crate::domain::enroll::EnrollToken;
use crate::domain::import::{DeadlineKind, JobIntent, JobSnapshot};
use crate::domain::lease::{Fence, Release};
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::domain::seed::SeedState;
use crate::keys::MasterKey;
use crate::store::LeaseTiming;

/// An argument as the caller passes it, and the owned value that is moved into the closure.
pub trait Carry {
    type Owned: Lend + Send + 'static;
    fn carry(self) -> Self::Owned;
}

/// An owned argument, lent to the operation's function as the type it takes.
pub trait Lend {
    type Out<'a>
    where
        Self: 'a;
    fn lend(&self) -> Self::Out<'_>;
}

/// Records and names passed by reference: cloned, then lent back by reference.
macro_rules! by_reference {
    ($($t:ty),* $(,)?) => {$(
        impl Carry for &$t {
            type Owned = $t;
            fn carry(self) -> $t {
                self.clone()
            }
        }
        impl Lend for $t {
            type Out<'a> = &'a $t;
            fn lend(&self) -> &$t {
                self
            }
        }
    )*};
}

by_reference!(
    Idem,
    SpiffeId,
    AgentInfo,
    NewSeed,
    Placement,
    Fence,
    crate::domain::lease::WorkerFence,
    ProgressDelta,
    DriveSpec,
    Release,
    JobIntent,
    JobSnapshot,
    NewShipping,
    super::Retarget,
    EnrollToken,
    AuditRecord,
    Arc<MasterKey>,
);

/// Values passed as they are: moved in, and copied (or cloned) out for the call.
macro_rules! by_value {
    ($($t:ty),* $(,)?) => {$(
        impl Carry for $t {
            type Owned = $t;
            fn carry(self) -> $t {
                self
            }
        }
        impl Lend for $t {
            type Out<'a> = $t;
            fn lend(&self) -> $t {
                self.clone()
            }
        }
    )*};
}

by_value!(
    i64,
    u32,
    bool,
    LeaseTiming,
    DiskKind,
    DeadlineKind,
    Option<SeedState>,
    Option<Role>,
    Option<SealedKey>,
    std::result::Result<(), String>,
);

/// `AuditRecord` and the master keys are passed by value and lent by reference.
macro_rules! moved_lent_by_reference {
    ($($t:ty),* $(,)?) => {$(
        impl Carry for $t {
            type Owned = $t;
            fn carry(self) -> $t {
                self
            }
        }
    )*};
}

moved_lent_by_reference!(AuditRecord, Arc<MasterKey>);

impl Carry for &str {
    type Owned = String;
    fn carry(self) -> String {
        self.to_string()
    }
}

impl Lend for String {
    type Out<'a> = &'a str;
    fn lend(&self) -> &str {
        self
    }
}

impl Carry for Option<&str> {
    type Owned = Option<String>;
    fn carry(self) -> Option<String> {
        self.map(str::to_string)
    }
}

impl Lend for Option<String> {
    type Out<'a> = Option<&'a str>;
    fn lend(&self) -> Option<&str> {
        self.as_deref()
    }
}

impl<T: Clone + Send + 'static> Carry for &[T] {
    type Owned = Vec<T>;
    fn carry(self) -> Vec<T> {
        self.to_vec()
    }
}

impl<T: Send + 'static> Carry for Vec<T> {
    type Owned = Vec<T>;
    fn carry(self) -> Vec<T> {
        self
    }
}

impl<T: Send + 'static> Lend for Vec<T> {
    type Out<'a> = &'a [T];
    fn lend(&self) -> &[T] {
        self
    }
}

impl Carry for Option<&(SealedKey, bool)> {
    type Owned = Option<(SealedKey, bool)>;
    fn carry(self) -> Option<(SealedKey, bool)> {
        self.cloned()
    }
}

impl Lend for Option<(SealedKey, bool)> {
    type Out<'a> = Option<&'a (SealedKey, bool)>;
    fn lend(&self) -> Option<&(SealedKey, bool)> {
        self.as_ref()
    }
}
