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
        long_side: None,
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

#[test]
fn manifests_with_transcripts_in_csv_tsv_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.wav"), b"A").unwrap();
    std::fs::write(dir.path().join("b.wav"), b"B").unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        FileList::open(&path)
    };
    let texts = |l: &FileList| -> Vec<Option<String>> {
        (0..l.len() as u64)
            .map(|i| l.text(i).map(str::to_string))
            .collect()
    };
    // Quoted commas, quotes and a newline survive; extra columns are ignored; no label: -1.
    let csv = write(
        "m.csv",
        "path,duration,text\na.wav,1.5,\"hello, \"\"world\"\"\"\nb.wav,2,\"two\nlines\"\n",
    )
    .unwrap();
    assert_eq!(csv.len(), 2);
    assert_eq!(
        texts(&csv),
        [Some("hello, \"world\"".into()), Some("two\nlines".into())]
    );
    assert_eq!((csv.label(0), csv.label(1)), (-1, -1));
    let mut buf = Vec::new();
    csv.read(1, &mut buf).unwrap();
    assert_eq!(buf, b"B", "paths relative to the manifest");
    // Common Voice's TSV: `path` and `sentence` among other columns, plus a label.
    let tsv = write(
        "m.tsv",
        "client_id\tpath\tsentence\tlabel\nx\ta.wav\tone sentence\t3\n",
    )
    .unwrap();
    assert_eq!(texts(&tsv), [Some("one sentence".into())]);
    assert_eq!(tsv.label(0), 3);
    // NeMo's JSON lines.
    let jsonl = write(
        "m.jsonl",
        "{\"audio_filepath\": \"a.wav\", \"duration\": 1.5, \"text\": \"the cat\"}\n\n\
         {\"audio_filepath\": \"b.wav\", \"duration\": 2.0, \"text\": \"\", \"label\": 7}\n",
    )
    .unwrap();
    assert_eq!(texts(&jsonl), [Some("the cat".into()), Some(String::new())]);
    assert_eq!((jsonl.label(0), jsonl.label(1)), (-1, 7));
    assert!(jsonl.describe().contains("with transcripts"));
    // The original `path,label` format has no transcripts.
    let plain = write("p.csv", "a.wav,1\nb.wav,2\n").unwrap();
    assert_eq!(texts(&plain), [None, None]);

    // Errors name the file and line.
    let err = |name: &str, body: &str| write(name, body).unwrap_err().to_string();
    let e = err(
        "bad.jsonl",
        "{\"path\": \"a.wav\", \"text\": \"x\"}\n{\"path\": \"b.wav\"\n",
    );
    assert!(e.contains("bad.jsonl:2") && e.contains("JSON"), "{e}");
    let e = err("nopath.jsonl", "{\"file_name\": \"a.wav\"}\n");
    assert!(e.contains("nopath.jsonl:1") && e.contains("no path"), "{e}");
    let e = err("label.jsonl", "{\"path\": \"a.wav\", \"label\": \"cat\"}\n");
    assert!(
        e.contains("label.jsonl:1") && e.contains("not an integer"),
        "{e}"
    );
    let e = err(
        "mixed.jsonl",
        "{\"path\": \"a.wav\", \"text\": \"x\"}\n{\"path\": \"b.wav\"}\n",
    );
    assert!(
        e.contains("mixed.jsonl:2") && e.contains("transcript"),
        "{e}"
    );
    let e = err("label.csv", "path,label,text\na.wav,cat,hi\n");
    assert!(e.contains("label.csv:2") && e.contains("cat"), "{e}");
    let e = err("nohead.tsv", "a.wav\thello\n");
    assert!(e.contains("nohead.tsv:1") && e.contains("header"), "{e}");
    let e = err("empty.jsonl", "\n\n");
    assert!(e.contains("lists no files"), "{e}");
}

#[test]
fn generated_photos_can_have_a_camera_size_long_side() {
    let spec = DatasetSpec {
        images: 2,
        classes: 1,
        seed: 3,
        long_side: Some(1000),
    };
    let decoder = sluice::ops::DecodeImage::default();
    let mut image = sluice::tensor::Image::default();
    for i in 0..2 {
        decoder
            .decode(&generate_sample(&spec, i).0, &mut image)
            .unwrap();
        let (long, short) = (image.width.max(image.height), image.width.min(image.height));
        assert!((1000..=1100).contains(&long), "{long}");
        assert!(
            short * 4 >= long * 3 - 4,
            "{}x{}",
            image.width,
            image.height
        );
    }
}
