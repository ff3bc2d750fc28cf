//! Who an event is for. A subscriber either may or may not read a private dataset, and
//! a transaction can change which organization owns it, so per dataset and transaction
//! every subscriber falls in one of four reader classes: whether they could read it
//! before the transaction (under its old organization) and whether they can after it
//! (under its new one). Derivation runs the rules of DESIGN.md §3 once per class and
//! marks each event with the set of classes that see it, its audience; fan-out puts each
//! hook owner in their class from their rights at that moment and keeps the events
//! whose audience holds it.
//!
//! While a dataset keeps its organization, reading it before and reading it after are
//! the same right, so only the outsider and reader classes can occur; when every class
//! that can occur sees the same events (any dataset public throughout), the events are
//! for everyone.
//!
//! The encoding is shared with the fan-out SQL in `store::changes`: class bit
//! `1 << (reads_before + 2 * reads_after)`, so 15 is everyone.

/// Whether a subscriber may read one dataset before and after one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// May read it as it stood before the transaction (its old organization).
    pub reads_before: bool,
    /// May read it as it stands after the transaction (its new organization).
    pub reads_after: bool,
}

impl Class {
    /// Reads it neither before nor after: the public, as far as private data goes.
    pub const OUTSIDER: Class = Class::new(false, false);

    /// Reads it before and after: sysadmins, members of both organizations,
    /// collaborators.
    pub const READER: Class = Class::new(true, true);

    /// The four classes, in bit order.
    pub const ALL: [Class; 4] = [
        Class::new(false, false),
        Class::new(true, false),
        Class::new(false, true),
        Class::new(true, true),
    ];

    /// The class of a subscriber with these rights.
    pub const fn new(reads_before: bool, reads_after: bool) -> Class {
        Class {
            reads_before,
            reads_after,
        }
    }

    /// This class's bit in an [`Audience`].
    pub fn bit(self) -> i16 {
        1 << (self.reads_before as i16 + 2 * self.reads_after as i16)
    }
}

/// A set of reader classes, stored as four bits on each event row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Audience(i16);

impl Audience {
    /// Every class: what any event about a dataset public before and after carries.
    pub const EVERYONE: Audience = Audience(15);

    /// Nobody yet; add classes with [`Audience::with`].
    pub const NOBODY: Audience = Audience(0);

    /// This set plus `class`.
    pub fn with(self, class: Class) -> Audience {
        Audience(self.0 | class.bit())
    }

    /// Whether subscribers of `class` receive the event.
    pub fn contains(self, class: Class) -> bool {
        self.0 & class.bit() != 0
    }

    /// The bits as stored in `event.audience`.
    pub fn bits(self) -> i16 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_own_bit_and_all_make_everyone() {
        let all = Class::ALL
            .iter()
            .fold(Audience::NOBODY, |audience, class| audience.with(*class));
        assert_eq!(all, Audience::EVERYONE);
        let bits: Vec<i16> = Class::ALL.iter().map(|c| c.bit()).collect();
        assert_eq!(bits, [1, 2, 4, 8]);
        let members = Audience::NOBODY.with(Class::READER);
        assert!(members.contains(Class::READER));
        assert!(!members.contains(Class::OUTSIDER));
    }
}
