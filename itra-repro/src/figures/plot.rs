//! Line and scatter figures rendered with `plotters`, each written as a PNG and an SVG.
//!
//! Text is laid out with `ab_glyph` from a TTF file found at run time, so nothing links fontconfig
//! or freetype. [`font_path`] says which file: `$ITRA_FONT` if set, else the first of a few common
//! system locations (DejaVu Sans from `fonts-dejavu-core` on Debian and Ubuntu). The PNGs rasterise
//! glyphs here (see `GlyphBitmap`); the SVGs keep text as `<text>` in the `sans-serif` family and
//! leave the glyphs to the viewer.
//!
//! **Writes are atomic**: each file is rendered in memory, written to `<stem>.<ext>.partial` and
//! renamed, so a figure on disk is always a finished one.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};
use serde::{Deserialize, Serialize};

/// Environment variable naming a `.ttf`/`.otf` file to draw text with.
pub const FONT_ENV: &str = "ITRA_FONT";

/// Where to look for a font when [`FONT_ENV`] is unset, in order.
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", // Debian, Ubuntu: fonts-dejavu-core
    "/usr/share/fonts/TTF/DejaVuSans.ttf",             // Arch: ttf-dejavu
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf", // Fedora: dejavu-sans-fonts
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",          // older Fedora, Alpine: font-dejavu
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf", // macOS
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The family name the font is registered under (and that the SVGs ask for).
const FONT_FAMILY: &str = "sans-serif";

// Layout, in pixels. Font sizes are plotters' sizes (the em is size / 1.24).
const LINE_PANEL_SIZE: (u32, u32) = (560, 430);
const SCATTER_PANEL_SIZE: u32 = 540;
const TITLE_FONT: f64 = 24.0;
const AXIS_TITLE_FONT: f64 = 20.0;
const TICK_FONT: f64 = 16.0;
const LEGEND_FONT: f64 = 17.0;
const CAPTION_FONT: f64 = 19.0;
const CAPTION_LINE_HEIGHT: u32 = 24;
const BLOCK_PADDING: u32 = 14;
const SIDE_MARGIN: u32 = 20;
const LEGEND_ROW_HEIGHT: u32 = 26;
const LEGEND_MARKER_GAP: u32 = 22;
const LEGEND_ENTRY_GAP: u32 = 26;
/// A line this short gets a marker on every point, so sparse curves stay readable.
const MARKER_MAX_POINTS: usize = 30;

/// Tableau 10 (matplotlib's default cycle): distinct, and readable for most colour vision.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// One line of a [`Panel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend entry, e.g. `"ITRA (λ = 0.6)"`.
    pub label: String,
    /// `(x, y)` in drawing order. Non-finite points break the line instead of failing.
    pub points: Vec<(f64, f64)>,
    /// Optional shaded band `(x, low, high)`, typically mean ± std over seeds.
    pub band: Option<Vec<(f64, f64, f64)>>,
}

impl Series {
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { label: label.into(), points, band: None }
    }

    pub fn with_band(mut self, band: Vec<(f64, f64, f64)>) -> Self {
        self.band = Some(band);
        self
    }
}

/// One set of axes in a [`line_figure`]. Put units in the axis labels, e.g. `"test accuracy (%)"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// Points of one class in a [`scatter_figure`] panel. Groups with the same label get the same
/// colour in every panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScatterGroup {
    pub label: String,
    pub points: Vec<[f64; 2]>,
}

/// Why a font could not be set up. Cloneable so the one-time lookup can be cached.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FontError {
    #[error(
        "no font found to draw figure text: set {FONT_ENV} to a .ttf file or install one \
         (apt-get install fonts-dejavu-core); looked at {}",
        display_paths(.searched)
    )]
    NotFound { searched: Vec<PathBuf> },
    #[error("cannot read font {}: {message}", .path.display())]
    Unreadable { path: PathBuf, message: String },
    #[error("{} is not a TrueType or OpenType font", .path.display())]
    Invalid { path: PathBuf },
}

/// Why a figure was not written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(transparent)]
    Font(#[from] FontError),
    #[error("a figure needs at least one panel")]
    NoPanels,
    #[error("drawing {} failed: {message}", .path.display())]
    Draw { path: PathBuf, message: String },
    #[error("cannot encode {} as png: {source}", .path.display())]
    Encode { path: PathBuf, source: image::ImageError },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
}

fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

/// The font file figure text is drawn with, loading and registering it on the first call.
/// `$ITRA_FONT` is read once per process.
pub fn font_path() -> Result<PathBuf, FontError> {
    loaded_font().map(|font| font.path.clone())
}

struct LoadedFont {
    path: PathBuf,
    face: FontRef<'static>,
}

fn loaded_font() -> Result<&'static LoadedFont, FontError> {
    static FONT: OnceLock<Result<LoadedFont, FontError>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = find_font(std::env::var_os(FONT_ENV), FONT_CANDIDATES)?;
        let bytes = std::fs::read(&path)
            .map_err(|err| FontError::Unreadable { path: path.clone(), message: err.to_string() })?;
        // plotters keeps fonts for the life of the process and wants `&'static`; this runs once
        // per process, so leaking is the honest lifetime.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let face = FontRef::try_from_slice(bytes).map_err(|_| FontError::Invalid { path: path.clone() })?;
        register_font(FONT_FAMILY, FontStyle::Normal, bytes).map_err(|_| FontError::Invalid { path: path.clone() })?;
        Ok(LoadedFont { path, face })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// `$ITRA_FONT` when set (and it must then exist), else the first existing candidate.
fn find_font(from_env: Option<OsString>, candidates: &[&str]) -> Result<PathBuf, FontError> {
    if let Some(path) = from_env.filter(|p| !p.is_empty()).map(PathBuf::from) {
        return match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(path),
            Ok(_) => Err(FontError::Unreadable { path, message: format!("not a file (from {FONT_ENV})") }),
            Err(err) => Err(FontError::Unreadable { path, message: format!("{err} (from {FONT_ENV})") }),
        };
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| FontError::NotFound { searched: candidates.iter().map(PathBuf::from).collect() })
}

fn font(size: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FONT_FAMILY), size, FontStyle::Normal)
}

fn text_width(size: f64, text: &str) -> u32 {
    font(size).box_size(text).map_or(0, |(width, _)| width)
}

/// Greedy word wrap of each caption line to `width` pixels.
fn wrap_caption(caption: &[String], width: u32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in caption {
        let mut current = String::new();
        for word in paragraph.split_whitespace() {
            let candidate = if current.is_empty() { word.to_owned() } else { format!("{current} {word}") };
            if !current.is_empty() && text_width(CAPTION_FONT, &candidate) > width {
                lines.push(std::mem::replace(&mut current, word.to_owned()));
            } else {
                current = candidate;
            }
        }
        lines.push(current);
    }
    lines
}

fn caption_height(lines: &[String]) -> u32 {
    if lines.is_empty() { 0 } else { lines.len() as u32 * CAPTION_LINE_HEIGHT + 2 * BLOCK_PADDING }
}

/// Tick labels without plotters' trailing `.0` on whole numbers (`20`, not `20.0`).
fn tick_label(value: &f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        return "0".to_owned();
    }
    if !(1e-3..1e6).contains(&magnitude) {
        return format!("{value:.1e}");
    }
    let fixed = format!("{value:.6}");
    fixed.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn series_color(index: usize) -> RGBColor {
    if let Some(&color) = PALETTE.get(index) {
        return color;
    }
    // Past ten, golden-ratio hues: still distinct, if less pleasant.
    let (r, g, b) = HSLColor((index as f64 * 0.618_034).fract(), 0.65, 0.45).rgb();
    RGBColor(r, g, b)
}

/// A figure that can be drawn on any plotters backend.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

fn draw_error<E: std::error::Error + Send + Sync>(err: DrawingAreaErrorKind<E>) -> String {
    err.to_string()
}

/// `BitMapBackend` with text rasterised here. plotters 0.3.7's `ab_glyph` path drops each glyph's
/// left side bearing, which renders "ITRA" as "I TRA" and "vanilla" as "vanill a"; this places
/// every glyph at its pen position plus kerning, with its own bounds.
struct GlyphBitmap<'a> {
    inner: BitMapBackend<'a>,
    face: &'static FontRef<'static>,
}

impl DrawingBackend for GlyphBitmap<'_> {
    type ErrorType = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        // The same scale plotters' own ab_glyph layout uses, so its size estimates hold.
        let font = self.face.as_scaled(style.size() as f32);
        let ascent = font.ascent();
        let mut glyphs = Vec::with_capacity(text.len());
        let mut pen = 0.0_f32;
        let mut previous = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(previous) = previous {
                pen += font.kern(previous, id);
            }
            glyphs.push(id.with_scale_and_position(font.scale(), ab_glyph::point(pen, ascent)));
            pen += font.h_advance(id);
            previous = Some(id);
        }
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -pen / 2.0,
            HPos::Right => -pen,
        };
        // y grows downwards from the top of the ascent; Center puts half the cap height (about
        // 0.39 of the ascent in common sans faces) on the anchor, which centres digits on ticks.
        let dy = match style.anchor().v_pos {
            VPos::Top => 0.0,
            VPos::Center => -ascent + 0.39 * ascent,
            VPos::Bottom => -(ascent - font.descent()),
        };
        let transform = style.transform();
        let (width, height) = self.get_size();
        let mut pixels = Vec::new();
        for glyph in glyphs {
            let Some(outline) = font.outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            outline.draw(|x, y, coverage| {
                let x = (bounds.min.x + x as f32 + dx).round() as i32;
                let y = (bounds.min.y + y as f32 + dy).round() as i32;
                pixels.push((transform.transform(x, y), coverage));
            });
        }
        for ((x, y), coverage) in pixels {
            let (x, y) = (pos.0 + x, pos.1 + y);
            if coverage > 0.0 && x >= 0 && y >= 0 && (x as u32) < width && (y as u32) < height {
                let ink = BackendColor { alpha: color.alpha * f64::from(coverage.min(1.0)), rgb: color.rgb };
                self.inner.draw_pixel((x, y), ink)?;
            }
        }
        Ok(())
    }
}

/// Draws `figure` twice, to memory, and writes `<stem>.png` and `<stem>.svg` atomically.
fn render(figure: &impl Figure, out_stem: &Path) -> Result<(PathBuf, PathBuf), PlotError> {
    let png_path = with_extension_appended(out_stem, "png");
    let svg_path = with_extension_appended(out_stem, "svg");
    let (width, height) = figure.size();
    let font = loaded_font()?;

    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let backend = GlyphBitmap { inner: BitMapBackend::with_buffer(&mut pixels, (width, height)), face: &font.face };
        let root = backend.into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| root.present().map_err(draw_error))
            .map_err(|message| PlotError::Draw { path: png_path.clone(), message })?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|source| PlotError::Encode { path: png_path.clone(), source })?;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| root.present().map_err(draw_error))
            .map_err(|message| PlotError::Draw { path: svg_path.clone(), message })?;
    }

    write_atomically(&png_path, &png)?;
    write_atomically(&svg_path, svg.as_bytes())?;
    Ok((png_path, svg_path))
}

/// `fig1` -> `fig1.png`; unlike `Path::with_extension`, keeps dots already in the stem
/// (`lambda0.6` stays whole).
fn with_extension_appended(stem: &Path, extension: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    let write_error = |source| PlotError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let partial = with_extension_appended(path, "partial");
    let result = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.map_err(write_error)
}

/// Draws `caption` lines left-aligned in `area`.
fn draw_caption<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, lines: &[String]) -> Result<(), String> {
    let style = TextStyle::from(font(CAPTION_FONT)).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Top));
    for (row, line) in lines.iter().enumerate() {
        let y = (BLOCK_PADDING + row as u32 * CAPTION_LINE_HEIGHT) as i32;
        area.draw_text(line, &style, (SIDE_MARGIN as i32, y)).map_err(draw_error)?;
    }
    Ok(())
}

/// `lo..hi` of the finite values, widened by `fraction` of the span on each side; a flat or empty
/// range still gets a visible extent.
fn padded_range(values: impl Iterator<Item = f64>, fraction: f64) -> std::ops::Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * fraction
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    (lo - pad)..(hi + pad)
}

/// Splits a polyline into its runs of finite points.
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    points.split(|(x, y)| !(x.is_finite() && y.is_finite())).filter(|run| !run.is_empty()).map(<[_]>::to_vec).collect()
}

/// The legend corner covering the fewest data points (ties go to the upper right). A legend of
/// `entries` rows covers roughly 40% of the width and 7% of the height per row.
fn emptiest_corner(
    points: &[(f64, f64)],
    x_range: &std::ops::Range<f64>,
    y_range: &std::ops::Range<f64>,
    entries: usize,
) -> SeriesLabelPosition {
    let legend_height = (0.04 + 0.07 * entries as f64).min(0.9);
    let normalised: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| {
            ((x - x_range.start) / (x_range.end - x_range.start), (y - y_range.start) / (y_range.end - y_range.start))
        })
        .collect();
    let count = |right: bool, upper: bool| {
        normalised
            .iter()
            .filter(|&&(x, y)| {
                (if right { x > 0.58 } else { x < 0.42 })
                    && (if upper { y > 1.0 - legend_height } else { y < legend_height })
            })
            .count()
    };
    [
        (SeriesLabelPosition::UpperRight, count(true, true)),
        (SeriesLabelPosition::LowerRight, count(true, false)),
        (SeriesLabelPosition::UpperLeft, count(false, true)),
        (SeriesLabelPosition::LowerLeft, count(false, false)),
    ]
    .into_iter()
    .min_by_key(|&(_, covered)| covered)
    .map_or(SeriesLabelPosition::UpperRight, |(position, _)| position)
}

struct LineFigure<'a> {
    panels: &'a [Panel],
    caption: Vec<String>,
}

impl Figure for LineFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let (panel_width, panel_height) = LINE_PANEL_SIZE;
        (panel_width * self.panels.len() as u32, panel_height + caption_height(&self.caption))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(draw_error)?;
        let (plots, caption_area) = root.split_vertically(LINE_PANEL_SIZE.1);
        for (panel, area) in self.panels.iter().zip(plots.split_evenly((1, self.panels.len()))) {
            draw_line_panel(panel, &area)?;
        }
        draw_caption(&caption_area, &self.caption)
    }
}

fn draw_line_panel<DB: DrawingBackend>(panel: &Panel, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
    let all_points: Vec<(f64, f64)> = panel
        .series
        .iter()
        .flat_map(|s| {
            let band = s.band.iter().flatten();
            s.points.iter().copied().chain(band.flat_map(|&(x, low, high)| [(x, low), (x, high)]))
        })
        .collect();
    let x_range = padded_range(all_points.iter().map(|p| p.0), 0.02);
    let y_range = padded_range(all_points.iter().map(|p| p.1), 0.06);

    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, font(TITLE_FONT))
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(78)
        .build_cartesian_2d(x_range.clone(), y_range.clone())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .axis_desc_style(font(AXIS_TITLE_FONT))
        .label_style(font(TICK_FONT))
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label)
        .bold_line_style(RGBColor(222, 222, 222))
        .light_line_style(RGBColor(242, 242, 242))
        .x_labels(7)
        .y_labels(7)
        .draw()
        .map_err(draw_error)?;

    // Bands first, so every line is drawn over every band.
    for (index, series) in panel.series.iter().enumerate() {
        let Some(band) = &series.band else { continue };
        let finite: Vec<&(f64, f64, f64)> =
            band.iter().filter(|(x, low, high)| x.is_finite() && low.is_finite() && high.is_finite()).collect();
        let outline: Vec<(f64, f64)> = finite
            .iter()
            .map(|&&(x, _, high)| (x, high))
            .chain(finite.iter().rev().map(|&&(x, low, _)| (x, low)))
            .collect();
        if outline.len() >= 3 {
            chart
                .draw_series(std::iter::once(Polygon::new(outline, series_color(index).mix(0.18).filled())))
                .map_err(draw_error)?;
        }
    }

    for (index, series) in panel.series.iter().enumerate() {
        let color = series_color(index);
        let line_style = color.stroke_width(2);
        let mut runs = finite_runs(&series.points);
        if runs.is_empty() {
            // Still give the series its legend entry.
            runs.push(Vec::new());
        }
        for (run_index, run) in runs.iter().enumerate() {
            let drawn = chart.draw_series(LineSeries::new(run.iter().copied(), line_style)).map_err(draw_error)?;
            if run_index == 0 {
                drawn
                    .label(series.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
            }
        }
        if series.points.len() <= MARKER_MAX_POINTS {
            chart
                .draw_series(runs.iter().flatten().map(|&point| Circle::new(point, 3, color.filled())))
                .map_err(draw_error)?;
        }
    }

    if !panel.series.is_empty() {
        chart
            .configure_series_labels()
            .position(emptiest_corner(&all_points, &x_range, &y_range, panel.series.len()))
            .label_font(font(LEGEND_FONT))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .margin(10)
            .draw()
            .map_err(draw_error)?;
    }
    Ok(())
}

/// Draws `panels` side by side above `caption` and writes `<out_stem>.png` and `<out_stem>.svg`.
///
/// Each series keeps its colour by position, so give every panel its series in the same order
/// (e.g. baseline first). Caption lines are word-wrapped to the figure's width; a typical caption
/// is the paper's claim followed by whether this run shows it.
pub fn line_figure(panels: &[Panel], caption: &[String], out_stem: &Path) -> Result<(PathBuf, PathBuf), PlotError> {
    if panels.is_empty() {
        return Err(PlotError::NoPanels);
    }
    font_path()?;
    let width = LINE_PANEL_SIZE.0 * panels.len() as u32;
    let figure = LineFigure { panels, caption: wrap_caption(caption, width - 2 * SIDE_MARGIN) };
    render(&figure, out_stem)
}

struct ScatterFigure<'a> {
    panels: &'a [(String, Vec<ScatterGroup>)],
    /// Every label in order of first appearance; its index is its colour.
    classes: Vec<&'a str>,
    legend_rows: Vec<Vec<usize>>,
    caption: Vec<String>,
}

impl ScatterFigure<'_> {
    fn legend_height(&self) -> u32 {
        if self.legend_rows.is_empty() { 0 } else { self.legend_rows.len() as u32 * LEGEND_ROW_HEIGHT + BLOCK_PADDING }
    }

    fn legend_entry_width(class: &str) -> u32 {
        LEGEND_MARKER_GAP + text_width(LEGEND_FONT, class) + LEGEND_ENTRY_GAP
    }
}

impl Figure for ScatterFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (
            SCATTER_PANEL_SIZE * self.panels.len() as u32,
            SCATTER_PANEL_SIZE + self.legend_height() + caption_height(&self.caption),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(draw_error)?;
        let (plots, rest) = root.split_vertically(SCATTER_PANEL_SIZE);
        let (legend_area, caption_area) = rest.split_vertically(self.legend_height());
        for ((title, groups), area) in self.panels.iter().zip(plots.split_evenly((1, self.panels.len()))) {
            self.draw_panel(title, groups, &area)?;
        }
        self.draw_legend(&legend_area)?;
        draw_caption(&caption_area, &self.caption)
    }
}

impl ScatterFigure<'_> {
    fn class_index(&self, label: &str) -> usize {
        self.classes.iter().position(|&class| class == label).unwrap_or_default()
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        title: &str,
        groups: &[ScatterGroup],
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), String> {
        let points = || groups.iter().flat_map(|g| g.points.iter());
        let x_range = padded_range(points().map(|p| p[0]), 0.05);
        let y_range = padded_range(points().map(|p| p[1]), 0.05);
        // Same span on both axes: t-SNE distances mean the same thing in every direction.
        let half_span = (x_range.end - x_range.start).max(y_range.end - y_range.start) / 2.0;
        let square = |range: std::ops::Range<f64>| {
            let middle = (range.start + range.end) / 2.0;
            (middle - half_span)..(middle + half_span)
        };

        let mut chart = ChartBuilder::on(area)
            .caption(title, font(TITLE_FONT))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(square(x_range), square(y_range))
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("t-SNE 1")
            .y_desc("t-SNE 2")
            .axis_desc_style(font(AXIS_TITLE_FONT))
            .label_style(font(TICK_FONT))
            .x_label_formatter(&tick_label)
            .y_label_formatter(&tick_label)
            .x_labels(5)
            .y_labels(5)
            .draw()
            .map_err(draw_error)?;
        for group in groups {
            let color = series_color(self.class_index(&group.label));
            chart
                .draw_series(
                    group
                        .points
                        .iter()
                        .filter(|p| p[0].is_finite() && p[1].is_finite())
                        .map(|p| Circle::new((p[0], p[1]), 2, color.mix(0.8).filled())),
                )
                .map_err(draw_error)?;
        }
        Ok(())
    }

    fn draw_legend<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let style = TextStyle::from(font(LEGEND_FONT)).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        for (row, entries) in self.legend_rows.iter().enumerate() {
            let y = (row as u32 * LEGEND_ROW_HEIGHT + LEGEND_ROW_HEIGHT / 2) as i32;
            let mut x = SIDE_MARGIN as i32;
            for &class in entries {
                let label = self.classes[class];
                area.draw(&Circle::new((x + 6, y), 6, series_color(class).filled())).map_err(draw_error)?;
                area.draw_text(label, &style, (x + LEGEND_MARKER_GAP as i32, y)).map_err(draw_error)?;
                x += Self::legend_entry_width(label) as i32;
            }
        }
        Ok(())
    }
}

/// Draws one scatter panel per `(title, groups)` side by side, a shared legend of the group
/// labels below them, then `caption`; writes `<out_stem>.png` and `<out_stem>.svg`.
///
/// Made for Figure 3: t-SNE maps of test features, baseline next to ITRA, one group per class.
/// Both axes of a panel span the same length, so clusters keep their shape.
pub fn scatter_figure(
    panels: &[(String, Vec<ScatterGroup>)],
    caption: &[String],
    out_stem: &Path,
) -> Result<(PathBuf, PathBuf), PlotError> {
    if panels.is_empty() {
        return Err(PlotError::NoPanels);
    }
    font_path()?;
    let mut classes: Vec<&str> = Vec::new();
    for group in panels.iter().flat_map(|(_, groups)| groups) {
        if !classes.contains(&group.label.as_str()) {
            classes.push(&group.label);
        }
    }
    let width = SCATTER_PANEL_SIZE * panels.len() as u32;
    let usable = width - 2 * SIDE_MARGIN;
    let mut legend_rows: Vec<Vec<usize>> = Vec::new();
    let mut row_width = 0;
    for (index, class) in classes.iter().enumerate() {
        let entry = ScatterFigure::legend_entry_width(class);
        match legend_rows.last_mut() {
            Some(row) if row_width + entry <= usable => {
                row.push(index);
                row_width += entry;
            }
            _ => {
                legend_rows.push(vec![index]);
                row_width = entry;
            }
        }
    }
    let figure = ScatterFigure { panels, classes, legend_rows, caption: wrap_caption(caption, usable) };
    render(&figure, out_stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> image::RgbImage {
        image::open(path).expect("png decodes").to_rgb8()
    }

    fn distinct_colours(image: &image::RgbImage) -> usize {
        let mut seen: Vec<[u8; 3]> = image.pixels().map(|p| p.0).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    fn no_partial_files(dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(!name.to_string_lossy().ends_with(".partial"), "{name:?} left behind");
        }
    }

    fn curve(f: impl Fn(f64) -> f64, epochs: usize) -> Vec<(f64, f64)> {
        (1..=epochs).map(|e| (e as f64, f(e as f64))).collect()
    }

    fn figure_one_like() -> Vec<Panel> {
        let band = |points: &[(f64, f64)], width: f64| points.iter().map(|&(x, y)| (x, y - width, y + width)).collect();
        let sgd_distance = curve(|e| 0.62 + 0.2 * (-e / 5.0).exp(), 40);
        let itra_distance = curve(|e| 0.40 + 0.4 * (-e / 12.0).exp(), 40);
        vec![
            Panel {
                title: "Same-class distance".into(),
                x_label: "epoch".into(),
                y_label: "normalised distance".into(),
                series: vec![
                    Series::new("vanilla SGD", sgd_distance.clone()).with_band(band(&sgd_distance, 0.02)),
                    Series::new("ITRA (λ = 0.8)", itra_distance.clone()).with_band(band(&itra_distance, 0.03)),
                ],
            },
            Panel {
                title: "Test accuracy".into(),
                x_label: "epoch".into(),
                y_label: "test accuracy (%)".into(),
                series: vec![
                    Series::new("vanilla SGD", curve(|e| 93.0 - 40.0 * (-e / 6.0).exp(), 40)),
                    Series::new("ITRA (λ = 0.8)", curve(|e| 94.5 - 40.0 * (-e / 6.0).exp(), 40)),
                ],
            },
            Panel {
                title: "Test cross-entropy".into(),
                x_label: "epoch".into(),
                y_label: "test CE (nats)".into(),
                series: vec![
                    Series::new("vanilla SGD", curve(|e| 0.25 + 1.5 * (-e / 6.0).exp() + 0.004 * e, 40)),
                    Series::new("ITRA (λ = 0.8)", curve(|e| 0.2 + 1.5 * (-e / 6.0).exp(), 40)),
                ],
            },
        ]
    }

    #[test]
    fn line_figure_writes_a_readable_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let caption = vec![
            "Paper: with ITRA the same-class distance keeps decreasing while vanilla SGD's \
             stabilises, with higher accuracy and lower test loss."
                .to_owned(),
            "This run: shown (ITRA 0.40 vs SGD 0.62 at epoch 40; 3 seeds, bands are ± 1 std).".to_owned(),
        ];
        let (png, svg) = line_figure(&figure_one_like(), &caption, &dir.path().join("fig1")).unwrap();
        assert_eq!(png, dir.path().join("fig1.png"));
        assert_eq!(svg, dir.path().join("fig1.svg"));

        let image = decode(&png);
        let expected_height =
            LINE_PANEL_SIZE.1 + caption_height(&wrap_caption(&caption, 3 * LINE_PANEL_SIZE.0 - 2 * SIDE_MARGIN));
        assert_eq!(image.dimensions(), (3 * LINE_PANEL_SIZE.0, expected_height));
        assert!(distinct_colours(&image) > 50, "png looks flat");
        // The caption block is not blank: text was drawn there.
        let caption_ink = (LINE_PANEL_SIZE.1..image.height())
            .flat_map(|y| (0..image.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0 != [255, 255, 255])
            .count();
        assert!(caption_ink > 1000, "caption area nearly empty: {caption_ink} pixels");

        let svg = std::fs::read_to_string(svg).unwrap();
        for text in [
            "vanilla SGD",
            "ITRA (λ = 0.8)",
            "Same-class distance",
            "Test accuracy",
            "test accuracy (%)",
            "test CE (nats)",
            "normalised distance",
            "epoch",
            "Paper: with ITRA",
        ] {
            assert!(svg.contains(text), "svg lacks {text:?}");
        }
        no_partial_files(dir.path());
    }

    #[test]
    fn scatter_figure_writes_a_readable_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
        let panel = |spread: f64| -> Vec<ScatterGroup> {
            classes
                .iter()
                .enumerate()
                .map(|(c, name)| {
                    let angle = c as f64 / 10.0 * std::f64::consts::TAU;
                    let points = (0..30)
                        .map(|k| {
                            let wobble = (k as f64 * 2.399).sin() * spread;
                            let radial = (k as f64 * 1.618).cos() * spread;
                            [20.0 * angle.cos() + wobble, 20.0 * angle.sin() + radial]
                        })
                        .collect();
                    ScatterGroup { label: (*name).to_owned(), points }
                })
                .collect()
        };
        let panels = vec![("Baseline (vanilla SGD)".to_owned(), panel(5.0)), ("ITRA (λ = 0.8)".to_owned(), panel(2.0))];
        let caption = vec!["Paper: ITRA's classes are tighter with clearer margins.".to_owned()];
        let (png, svg) = scatter_figure(&panels, &caption, &dir.path().join("fig3.tsne")).unwrap();
        assert_eq!(png, dir.path().join("fig3.tsne.png"));

        let image = decode(&png);
        assert_eq!(image.width(), 2 * SCATTER_PANEL_SIZE);
        assert!(image.height() > SCATTER_PANEL_SIZE + CAPTION_LINE_HEIGHT);
        assert!(distinct_colours(&image) > 20, "png looks flat");

        let svg = std::fs::read_to_string(svg).unwrap();
        for text in classes.iter().chain(&["Baseline (vanilla SGD)", "ITRA (λ = 0.8)", "t-SNE 1", "t-SNE 2"]) {
            assert!(svg.contains(text), "svg lacks {text:?}");
        }
        no_partial_files(dir.path());
    }

    #[test]
    fn awkward_series_still_render() {
        let dir = tempfile::tempdir().unwrap();
        let panels = vec![Panel {
            title: "Flat, broken and empty".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![
                Series::new("flat", vec![(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)]),
                Series::new("broken", vec![(0.0, 0.5), (1.0, f64::NAN), (2.0, 0.7), (3.0, 0.6)]),
                Series::new("empty", vec![]),
                Series::new("single", vec![(1.5, 0.9)]),
            ],
        }];
        let (png, svg) = line_figure(&panels, &[], &dir.path().join("nested/dir/odd")).unwrap();
        let image = decode(&png);
        assert_eq!(image.dimensions(), LINE_PANEL_SIZE);
        let svg = std::fs::read_to_string(svg).unwrap();
        assert!(svg.contains("broken") && svg.contains("empty"));
    }

    #[test]
    fn overwriting_replaces_the_figure() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("again");
        let panel = |label: &str| Panel {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series::new(label, vec![(0.0, 0.0), (1.0, 1.0)])],
        };
        line_figure(&[panel("first")], &[], &stem).unwrap();
        let (_, svg) = line_figure(&[panel("second")], &[], &stem).unwrap();
        let svg = std::fs::read_to_string(svg).unwrap();
        assert!(svg.contains("second") && !svg.contains("first"));
        no_partial_files(dir.path());
    }

    #[test]
    fn no_panels_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(line_figure(&[], &[], &dir.path().join("x")), Err(PlotError::NoPanels)));
        assert!(matches!(scatter_figure(&[], &[], &dir.path().join("x")), Err(PlotError::NoPanels)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_font_names_the_package_to_install() {
        let err = find_font(None, &["/nonexistent/a.ttf", "/nonexistent/b.ttf"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no font found to draw figure text: set ITRA_FONT to a .ttf file or install one \
             (apt-get install fonts-dejavu-core); looked at /nonexistent/a.ttf, /nonexistent/b.ttf"
        );
        let from_env = find_font(Some("/nonexistent/mine.ttf".into()), FONT_CANDIDATES).unwrap_err();
        assert!(matches!(&from_env, FontError::Unreadable { path, .. } if path == Path::new("/nonexistent/mine.ttf")));
        assert!(from_env.to_string().contains("ITRA_FONT"));
    }

    #[test]
    fn font_env_wins_over_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("mine.ttf");
        std::fs::write(&mine, b"not really a font").unwrap();
        assert_eq!(find_font(Some(mine.clone().into()), FONT_CANDIDATES).unwrap(), mine);
        assert_eq!(find_font(Some("".into()), &[mine.to_str().unwrap()]).unwrap(), mine);
    }

    #[test]
    fn legend_avoids_the_data() {
        let rising: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, i as f64)).collect();
        let falling: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 19.0 - i as f64)).collect();
        let range = 0.0..19.0;
        assert!(matches!(emptiest_corner(&rising, &range, &range, 2), SeriesLabelPosition::LowerRight));
        assert!(matches!(emptiest_corner(&falling, &range, &range, 2), SeriesLabelPosition::UpperRight));
    }

    /// Columns and rows holding ink after drawing `text` at (100, 50) with `style`.
    fn ink_extent(text: &str, style: TextStyle) -> (std::ops::RangeInclusive<u32>, std::ops::RangeInclusive<u32>) {
        let face = &loaded_font().unwrap().face;
        let (width, height) = (200u32, 100u32);
        let mut pixels = vec![255u8; (width * height * 3) as usize];
        {
            let backend = GlyphBitmap { inner: BitMapBackend::with_buffer(&mut pixels, (width, height)), face };
            let root = backend.into_drawing_area();
            root.draw_text(text, &style, (100, 50)).unwrap();
            root.present().unwrap();
        }
        let image = image::RgbImage::from_raw(width, height, pixels).unwrap();
        let inked: Vec<(u32, u32)> =
            image.enumerate_pixels().filter(|(_, _, p)| p.0[0] < 128).map(|(x, y, _)| (x, y)).collect();
        let xs = inked.iter().map(|p| p.0);
        let ys = inked.iter().map(|p| p.1);
        (xs.clone().min().unwrap()..=xs.max().unwrap(), ys.clone().min().unwrap()..=ys.max().unwrap())
    }

    #[test]
    fn bitmap_text_honours_anchor_and_rotation() {
        let centred = TextStyle::from(font(24.0)).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
        let (columns, rows) = ink_extent("ITRA", centred.clone());
        let middle = (columns.start() + columns.end()) as f64 / 2.0;
        assert!((middle - 100.0).abs() <= 3.0, "ink centred at x = {middle}");
        let middle = (rows.start() + rows.end()) as f64 / 2.0;
        assert!((middle - 50.0).abs() <= 3.0, "ink centred at y = {middle}");
        // "ITRA" is about two em wide: wider than tall, but no wider than plotters' own estimate.
        let ink_width = columns.end() - columns.start() + 1;
        assert!(ink_width > rows.end() - rows.start());
        assert!(ink_width <= text_width(24.0, "ITRA"));

        let (columns, rows) = ink_extent("ITRA", centred.transform(FontTransform::Rotate270));
        assert!(rows.end() - rows.start() > columns.end() - columns.start(), "rotated text should run upwards");

        let left = TextStyle::from(font(24.0)).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Top));
        let (columns, rows) = ink_extent("ITRA", left);
        assert!((100..=103).contains(columns.start()) && (50..=56).contains(rows.start()));
    }

    #[test]
    fn tick_labels_drop_float_noise() {
        assert_eq!(tick_label(&20.0), "20");
        assert_eq!(tick_label(&0.30000000000000004), "0.3");
        assert_eq!(tick_label(&-0.0), "0");
        assert_eq!(tick_label(&92.5), "92.5");
        assert_eq!(tick_label(&2.5e-5), "2.5e-5");
    }

    #[test]
    fn stems_keep_their_dots() {
        assert_eq!(with_extension_appended(Path::new("out/lambda0.6"), "png"), PathBuf::from("out/lambda0.6.png"));
    }
}
