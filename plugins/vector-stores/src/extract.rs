//! A file's text, by its name's extension: plain text and source files as they are, JSON as
//! it is, HTML without its markup, PDF through lopdf (the text of each page, in order).
//! Formats whose parser is not built (Word, PowerPoint) are refused by name, so the file ends
//! `failed` with `unsupported_file`.

/// Why a file has no text here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// A format Cinder does not read (yet): `unsupported_file`.
    Unsupported(String),
    /// Bytes that are not what the name says: `invalid_file`.
    Invalid(String),
}

const TEXT: [&str; 22] = [
    "txt", "md", "markdown", "json", "jsonl", "csv", "tsv", "c", "cpp", "h", "cs", "css", "go",
    "java", "js", "ts", "php", "py", "rb", "rs", "sh", "tex",
];
const NOT_BUILT: [&str; 3] = ["doc", "docx", "pptx"];

/// The text of a file named `filename` with content `bytes`.
pub fn text(filename: &str, bytes: &[u8]) -> Result<String, Unreadable> {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if NOT_BUILT.contains(&ext.as_str()) {
        return Err(Unreadable::Unsupported(format!(
            "text extraction from .{ext} files is not built in Cinder yet (plain text, \
             Markdown, JSON, HTML, PDF and source files are)"
        )));
    }
    if ext == "pdf" {
        return pdf(bytes);
    }
    let html = ext == "html" || ext == "htm";
    if !html && !TEXT.contains(&ext.as_str()) {
        return Err(Unreadable::Unsupported(format!(
            "files of type `.{ext}` are not supported for file search"
        )));
    }
    let s = std::str::from_utf8(bytes)
        .map_err(|e| Unreadable::Invalid(format!("the file is not UTF-8 text: {e}")))?;
    Ok(if html { strip_html(s) } else { s.to_owned() })
}

/// A PDF's text, page by page; a PDF with no text (scanned pages) is refused, as there is
/// nothing to search.
fn pdf(bytes: &[u8]) -> Result<String, Unreadable> {
    let doc = lopdf::Document::load_mem(bytes)
        .map_err(|e| Unreadable::Invalid(format!("the PDF could not be read: {e}")))?;
    if doc.is_encrypted() {
        return Err(Unreadable::Unsupported(
            "encrypted PDFs are not read (their text needs the password)".into(),
        ));
    }
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let text = doc
        .extract_text(&pages)
        .map_err(|e| Unreadable::Invalid(format!("the PDF's text could not be read: {e}")))?;
    if text.trim().is_empty() {
        return Err(Unreadable::Invalid(
            "the PDF has no text (scanned pages are images; OCR is not built in)".into(),
        ));
    }
    Ok(text)
}

/// HTML's text: tags dropped (a block tag ends a line), `script` and `style` content dropped,
/// the common entities decoded, runs of blank lines folded.
fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() / 2);
    let mut rest = s;
    while let Some(lt) = rest.find('<') {
        out.push_str(&decode(&rest[..lt]));
        let tag_end = rest[lt..].find('>').map_or(rest.len(), |g| lt + g + 1);
        let tag = rest[lt + 1..tag_end.saturating_sub(1).max(lt + 1)].to_ascii_lowercase();
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        rest = &rest[tag_end..];
        if (name == "script" || name == "style") && !tag.starts_with('/') {
            let close = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = match lower.find(&close) {
                Some(i) => &rest[i..],
                None => "",
            };
            continue;
        }
        if [
            "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
            "title",
        ]
        .contains(&name.as_str())
        {
            out.push('\n');
        }
    }
    out.push_str(&decode(rest));
    let mut folded = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines().map(str::trim) {
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        folded.push_str(line);
        folded.push('\n');
    }
    folded.trim().to_owned()
}

fn decode(s: &str) -> String {
    s.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_types_pass_and_others_are_refused_by_name() {
        assert_eq!(text("a.MD", b"# Hi").unwrap(), "# Hi");
        assert!(
            matches!(text("a.docx", b"PK"), Err(Unreadable::Unsupported(m)) if m.contains(".docx"))
        );
        assert!(matches!(
            text("a.pdf", b"%PDF-1.7 nothing"),
            Err(Unreadable::Invalid(_))
        ));
        assert!(matches!(
            text("a.exe", b"MZ"),
            Err(Unreadable::Unsupported(_))
        ));
        assert!(matches!(
            text("a.txt", &[0xff, 0xfe]),
            Err(Unreadable::Invalid(_))
        ));
    }

    #[test]
    fn html_loses_its_markup_scripts_and_styles() {
        let html = "<html><head><title>T</title><style>p{}</style></head><body>\
                    <p>Fish &amp; chips</p><script>var x = '<p>';</script><div>Tea</div></body></html>";
        assert_eq!(
            text("a.html", html.as_bytes()).unwrap(),
            "T\n\nFish & chips\n\nTea"
        );
    }

    /// A one-page PDF showing `text` in a standard font, made with lopdf.
    fn pdf_of(text: &str) -> Vec<u8> {
        use lopdf::content::{Content, Operation};
        use lopdf::{Document, Object, Stream, dictionary};
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Courier",
        });
        let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![72.into(), 720.into()]),
                Operation::new("Tj", vec![Object::string_literal(text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
                "Resources" => resources_id,
                "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
            }),
        );
        let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
        doc.trailer.set("Root", catalog_id);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn a_pdf_gives_its_text() {
        let got = text("paper.PDF", &pdf_of("Owls hunt at night.")).unwrap();
        assert!(got.contains("Owls hunt at night."), "{got:?}");
    }
}
