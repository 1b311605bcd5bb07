//! The filer's own decisions, on a real Maildir in a temporary directory:
//! when a batch is due, which targets a stable (fetch) filer skips, which
//! folders it makes, and how big a batch may get.

use super::*;
use crate::engine::filing::{filter_section, FolderLayout};
use crate::engine::message::Content;

fn message(index: u64, text: &str) -> Message {
    let mut content = Content::new();
    content.extend(text.as_bytes()).unwrap();
    Message {
        index,
        offset: index * 100,
        envelope: Some(b"a@b Thu Jan  1 00:00:00 1970".to_vec()),
        header: Vec::new(),
        content,
    }
}

fn inbox() -> Target {
    Target::Folder("INBOX".to_string())
}

#[test]
fn a_batch_is_due_at_its_size_and_not_before() {
    let root = tempfile::tempdir().unwrap();
    let mut filer = Filer::new(&filter_section(""), root.path(), None)
        .unwrap()
        .with_batch(3);
    let text = "Subject: s\n\nbody\n";
    filer.file(&mut message(1, text), inbox()).unwrap();
    assert!(!filer.should_commit(), "one message of a batch of 3");
    assert_eq!(filer.pending_bytes, text.len() as u64);
    filer.file(&mut message(2, text), inbox()).unwrap();
    assert!(!filer.should_commit(), "two of 3");
    assert_eq!(filer.pending_bytes, 2 * text.len() as u64);
    filer.file(&mut message(3, text), inbox()).unwrap();
    assert!(filer.should_commit(), "three of 3");
    let batch = filer.take_batch();
    assert_eq!((batch.len(), batch.is_empty()), (3, false));
    assert_eq!(batch.commit().unwrap().len(), 3);
    assert!(!filer.should_commit(), "nothing queued");
    assert_eq!(filer.pending_bytes, 0);
    let empty = filer.take_batch();
    assert_eq!((empty.len(), empty.is_empty()), (0, true));
}

/// Each queued message holds an open file, and a pipeline has up to eight
/// batches in flight: a batch never asks for more than an eighth of the
/// files this process may open, whatever the configuration says.
#[test]
fn a_batch_holds_at_most_an_eighth_of_the_open_file_limit() {
    let root = tempfile::tempdir().unwrap();
    let mut config = filter_section("");
    config.batch = usize::MAX;
    let filer = Filer::new(&config, root.path(), None).unwrap();
    let limit = os::raise_open_file_limit().unwrap();
    assert!(filer.batch >= 1);
    assert!(
        (filer.batch as u64) <= limit / 8,
        "batch {} with {limit} files allowed",
        filer.batch
    );
    assert_eq!(filer.with_batch(usize::MAX).batch, max_batch());
}

/// A fetch's filer (stable names, first delivery of its claim) delivers to
/// an mbox file and to an agent; only a resumed one may find a message
/// there already. Checking the quarantine for those names makes no folder.
#[test]
fn a_stable_filer_delivers_to_mbox_files_and_agents_and_makes_no_quarantine() {
    let root = tempfile::tempdir().unwrap();
    let stable = StableId {
        time: 1_700_000_000,
        claim: "c1".into(),
        resumed: false,
    };
    let mut filer = Filer::new(&filter_section(""), root.path(), Some(stable)).unwrap();
    let filed = filer
        .file(
            &mut message(1, "Subject: one\n\nbody 1\n"),
            Target::Folder("mbox:box".to_string()),
        )
        .unwrap();
    assert!(matches!(filed, Filed::Appended { .. }), "{filed:?}");
    let out = root.path().join("piped");
    let argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("cat > '{}'", out.display()),
    ];
    let filed = filer
        .file(
            &mut message(2, "Subject: two\n\nbody 2\n"),
            Target::Mda(argv),
        )
        .unwrap();
    assert!(matches!(filed, Filed::Piped { .. }), "{filed:?}");
    let mbox = std::fs::read_to_string(root.path().join("box")).unwrap();
    assert!(mbox.contains("body 1"), "{mbox}");
    let piped = std::fs::read_to_string(&out).unwrap();
    assert!(piped.ends_with("Subject: two\n\nbody 2\n"), "{piped}");
    assert!(
        !root.path().join(".mailhaul-undelivered").exists(),
        "no quarantine was needed"
    );
}

/// Maildir++ subfolders get Courier's `maildirfolder` marker; the root
/// (INBOX) and nested-layout folders do not.
#[test]
fn only_maildirplusplus_subfolders_get_the_maildirfolder_marker() {
    for layout in [FolderLayout::MaildirPlusPlus, FolderLayout::Nested] {
        let root = tempfile::tempdir().unwrap();
        let mut config = filter_section("");
        config.layout = layout;
        let mut filer = Filer::new(&config, root.path(), None).unwrap();
        for (i, folder) in ["INBOX", "lists/x"].into_iter().enumerate() {
            filer
                .file(
                    &mut message(i as u64 + 1, "S: s\n\nb\n"),
                    Target::Folder(folder.to_string()),
                )
                .unwrap();
        }
        assert_eq!(filer.commit().unwrap().len(), 2);
        let sub = maildir::folder_dir(root.path(), layout, "lists/x").unwrap();
        let inbox = maildir::folder_dir(root.path(), layout, "INBOX").unwrap();
        let plus = layout == FolderLayout::MaildirPlusPlus;
        assert_eq!(sub.join("maildirfolder").exists(), plus, "{layout:?}");
        assert!(!inbox.join("maildirfolder").exists(), "{layout:?}");
        assert!(sub.join("new").is_dir() && inbox.join("new").is_dir());
    }
}
