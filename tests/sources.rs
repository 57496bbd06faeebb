//! Sources (ImageFolder, CSV file list) and the synthetic dataset generator.

use sluice::gen::{generate_sample, image_size, write_dataset, DatasetSpec};
use sluice::source::{FileList, ImageFolder, Source};

#[test]
fn image_folder_sorts_classes_and_files_and_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (class, files) in [("zebra", vec!["b.JPG", "a.jpeg"]), ("ant", vec!["x.png"])] {
        std::fs::create_dir(root.join(class)).unwrap();
        for f in files {
            std::fs::write(root.join(class).join(f), b"x").unwrap();
        }
    }
    std::fs::write(root.join("zebra").join("notes.txt"), b"x").unwrap();
    std::fs::write(root.join("README"), b"x").unwrap();
    let folder = ImageFolder::open(root).unwrap();
    assert_eq!(folder.classes(), ["ant", "zebra"]);
    assert_eq!(folder.len(), 3);
    let got: Vec<(String, i64)> = (0..3)
        .map(|i| {
            let origin = folder.origin(i);
            let name = origin.rsplit('/').next().unwrap().to_string();
            (name, folder.label(i))
        })
        .collect();
    assert_eq!(
        got,
        [
            ("x.png".to_string(), 0),
            ("a.jpeg".to_string(), 1),
            ("b.JPG".to_string(), 1)
        ]
    );
    let empty = tempfile::tempdir().unwrap();
    let err = ImageFolder::open(empty.path()).unwrap_err().to_string();
    assert!(err.contains("no images"), "{err}");
}

#[test]
fn file_list_resolves_relative_paths_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("one, two.jpg"), b"abc").unwrap();
    let csv = dir.path().join("list.csv");
    std::fs::write(&csv, "path,label\none, two.jpg,4\n\n/abs/x.png,2\n").unwrap();
    let list = FileList::open(&csv).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!((list.label(0), list.label(1)), (4, 2));
    let mut buf = Vec::new();
    list.read(0, &mut buf).unwrap();
    assert_eq!(buf, b"abc");
    assert_eq!(list.origin(1), "/abs/x.png");

    std::fs::write(&csv, "a.jpg,1\nb.jpg,cat\n").unwrap();
    let err = FileList::open(&csv).unwrap_err().to_string();
    assert!(err.contains(":2:") && err.contains("cat"), "{err}");
}

#[test]
fn generated_dataset_is_deterministic_and_imagenet_like() {
    let spec = DatasetSpec {
        images: 6,
        classes: 3,
        seed: 9,
    };
    let (a, class) = generate_sample(&spec, 4);
    let (b, _) = generate_sample(&spec, 4);
    assert_eq!(a, b, "same seed and index, same bytes");
    assert_eq!(class, 1);
    assert_ne!(
        a,
        generate_sample(
            &DatasetSpec {
                seed: 10,
                ..spec.clone()
            },
            4
        )
        .0
    );
    for i in 0..200 {
        let (w, h) = image_size(9, i);
        assert!(
            (200..=600).contains(&w) && (200..=600).contains(&h),
            "{w}x{h}"
        );
        let ratio = f64::from(w) / f64::from(h);
        assert!((0.74..=1.34).contains(&ratio), "{w}x{h}");
    }
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &spec, &|_| {}).unwrap();
    let folder = ImageFolder::open(dir.path()).unwrap();
    assert_eq!(folder.len(), 6);
    assert_eq!(folder.classes().len(), 3);
    let mut bytes = Vec::new();
    folder.read(0, &mut bytes).unwrap();
    assert_eq!(&bytes[..3], [0xFF, 0xD8, 0xFF]);
}
