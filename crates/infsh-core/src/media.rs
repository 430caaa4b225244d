//! Content types guessed from file names: for files an app returns and for
//! files the CLI uploads, so both sides label the same file the same way.

/// The content type for `filename`'s extension; `application/octet-stream`
/// when the extension is unknown or missing.
pub fn content_type_for(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "tif" | "tiff" => "image/tiff",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "glb" => "model/gltf-binary",
        "obj" => "model/obj",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_map_case_insensitively() {
        assert_eq!(content_type_for("a.PNG"), "image/png");
        assert_eq!(content_type_for("one.txt"), "text/plain");
        assert_eq!(content_type_for("archive.tar.zip"), "application/zip");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
    }
}
