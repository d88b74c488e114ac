"""`shopify`, `woocommerce`, `magento`: a shop's product import CSV, with the product images in three
sizes of sRGB JPEG beside it.

Each manifest row (one `variant_id`) becomes one product; the row's variations become that
product's further images. Images are named after the row's `sku` when it has one (else the image's
own stem) and written as `images/{thumbnail,medium,large}/{name}.jpg`. The CSV names them by
`image_base_url` + the package path (the folder the images are uploaded to), or by the package path
alone when no base URL is given; the result's metadata says which and what to do with it.

The CSV headers are each platform's documented import template, cited at each column list below.
"""

from __future__ import annotations

import abc
import csv
import html
import io
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from assetql_dagster.domain.export_writers import write_manifest_csv
from assetql_dagster.domain.naming import sanitize_component
from assetql_dagster.domain.settings import integer_check, number_check, quote
from assetql_dagster.domain.web_images import (
    fit_longest_side,
    jpeg_bytes,
    longest_side_size,
    srgb_jpeg_problems,
    to_srgb,
)
from assetql_dagster.pipeline.exporters.base import (
    Exporter,
    ExportImage,
    ExportJob,
    ExportResult,
    Option,
    choice,
    text,
)

# Shopify's product CSV template (https://help.shopify.com/en/manual/products/import-export/using-csv,
# sample https://help.shopify.com/csv/product_template.csv), in template order. The template's market
# columns ("Included / United States", "Price / International"...) are left out: they name the sample
# store's markets, and the documentation says a store's own CSV has columns for its own markets.
SHOPIFY_COLUMNS = (
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published",
    "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name", "Option3 Value",
    "Variant SKU", "Variant Grams", "Variant Inventory Tracker", "Variant Inventory Qty", "Variant Inventory Policy",
    "Variant Fulfillment Service", "Variant Price", "Variant Compare At Price", "Variant Requires Shipping",
    "Variant Taxable", "Variant Barcode", "Image Src", "Image Position", "Image Alt Text", "Gift Card",
    "SEO Title", "SEO Description", "Google Shopping / Google Product Category", "Google Shopping / Gender",
    "Google Shopping / Age Group", "Google Shopping / MPN", "Google Shopping / Condition",
    "Google Shopping / Custom Product", "Variant Image", "Variant Weight Unit", "Variant Tax Code",
    "Cost per item", "Status",
)

# WooCommerce's product CSV importer schema
# (https://github.com/woocommerce/woocommerce/wiki/Product-CSV-Import-Schema, sample
# https://github.com/woocommerce/woocommerce/blob/trunk/sample-data/sample_products.csv), in the
# sample's order. Its numbered groups ("Attribute 1 name"..., "Download 1 URL"...) and "Meta: ..."
# columns are per product and left out, as the schema allows; none is needed for a simple product.
WOOCOMMERCE_COLUMNS = (
    "ID", "Type", "SKU", "Name", "Published", "Is featured?", "Visibility in catalog", "Short description",
    "Description", "Date sale price starts", "Date sale price ends", "Tax status", "Tax class", "In stock?",
    "Stock", "Backorders allowed?", "Sold individually?", "Weight (lbs)", "Length (in)", "Width (in)",
    "Height (in)", "Allow customer reviews?", "Purchase note", "Sale price", "Regular price", "Categories",
    "Tags", "Shipping class", "Images", "Download limit", "Download expiry days", "Parent", "Grouped products",
    "Upsells", "Cross-sells", "External URL", "Button text", "Position",
)

# Magento 2 / Adobe Commerce catalog_product import, the simple product's columns in the default
# export order of the product data attributes reference
# (https://experienceleague.adobe.com/docs/commerce-admin/systems/data-transfer/data-attributes-product.html).
# The bundle_*, configurable_*, downloadable_*, associated_skus and custom_options columns of other
# product types are left out: the reference says an import may hold only the columns it changes,
# with sku first.
MAGENTO_COLUMNS = (
    "sku", "store_view_code", "attribute_set_code", "product_type", "categories", "product_websites", "name",
    "description", "short_description", "weight", "product_online", "tax_class_name", "visibility", "price",
    "special_price", "special_price_from_date", "special_price_to_date", "url_key", "meta_title", "meta_keywords",
    "meta_description", "base_image", "base_image_label", "small_image", "small_image_label", "thumbnail_image",
    "thumbnail_image_label", "swatch_image", "swatch_image_label", "created_at", "updated_at", "new_from_date",
    "new_to_date", "display_product_options_in", "map_price", "msrp_price", "map_enabled", "gift_message_available",
    "custom_design", "custom_design_from", "custom_design_to", "custom_layout_update", "page_layout",
    "product_options_container", "msrp_display_actual_price_type", "country_of_manufacture",
    "additional_attributes", "qty", "out_of_stock_qty", "use_config_min_qty", "is_qty_decimal", "allow_backorders",
    "use_config_backorders", "min_cart_qty", "use_config_min_sale_qty", "max_cart_qty", "use_config_max_sale_qty",
    "is_in_stock", "notify_on_stock_below", "use_config_notify_stock_qty", "manage_stock", "use_config_manage_stock",
    "use_config_qty_increments", "qty_increments", "use_config_enable_qty_inc", "enable_qty_increments",
    "is_decimal_divided", "website_id", "related_skus", "related_position", "crosssell_skus", "crosssell_position",
    "upsell_skus", "upsell_position", "additional_images", "additional_image_labels", "hide_from_product_page",
)

CSV_NAME = "products.csv"
SIZE_NAMES = ("thumbnail", "medium", "large")
# Longest sides: a listing thumbnail, a product page image, and Shopify's recommended 2048 px for
# zoomable product images (the shops make their own smaller renditions from the large one).
DEFAULT_SIZES = {"thumbnail": 150, "medium": 600, "large": 2048}
MIN_SIDE, MAX_SIDE = 16, 4096
# Shopify's documented limit for an uploaded product image; the other two shops' limits are their
# server's upload setting, usually lower, and a 2048 px JPEG is a few hundred kB.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_TITLE = 255  # Shopify titles and Magento names
MAX_MAGENTO_SKU = 64  # a longer sku makes the Magento import fail
MAX_HANDLE = 60
_HANDLE_UNSAFE = re.compile(r"[^a-z0-9]+")
_URL_UNSAFE = re.compile(r"[\s,\"'<>]")


def check_sizes(value: Any) -> str | None:
    """Why `value` is not a {size name: longest side} mapping over the defaults, or None."""
    example = "{large: 1600}"
    if not isinstance(value, Mapping):
        return (f"must be a mapping of {', '.join(SIZE_NAMES)} to a longest side in pixels, e.g. {example}, "
                f"got {quote(value)}")
    unknown = [name for name in value if name not in SIZE_NAMES]
    if unknown:
        return f"names unknown size(s) {quote(unknown)}; the sizes are {', '.join(SIZE_NAMES)}"
    for name, side in value.items():
        problem = integer_check(MIN_SIDE, MAX_SIDE)(side)
        if problem:
            return f"{name} {problem}"
    merged = sizes_of(value)
    if list(merged.values()) != sorted(merged.values()):
        return f"must grow from thumbnail to large, got {merged}"
    return None


def sizes_of(value: Mapping[str, int]) -> dict[str, int]:
    """The longest side of each size: `value` over DEFAULT_SIZES, in SIZE_NAMES order."""
    return {name: value.get(name, DEFAULT_SIZES[name]) for name in SIZE_NAMES}


def check_base_url(value: Any) -> str | None:
    """Why `value` is neither empty nor the http(s) URL of a folder, or None."""
    if value == "":
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    # The shops split image lists at commas, and the path is appended, so a query would end up in the middle.
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query \
            or parts.fragment or _URL_UNSAFE.search(value):
        return ("must be empty or the http(s) URL of the folder the images are uploaded to, without query, "
                f"fragment, spaces, quotes or commas (e.g. 'https://cdn.example.com/shop'), got {quote(value)}")
    return None


def nonempty_text(value: Any) -> str | None:
    return text(value) or (f"must not be empty, got {quote(value)}" if not value.strip() else None)


def check_vendor(value: Any) -> str | None:
    """Shopify refuses a one-character vendor."""
    problem = text(value)
    if problem is None and len(value.strip()) == 1:
        problem = f"must be empty or at least 2 characters, got {quote(value)}"
    return problem


SHOP_OPTIONS = {
    "image_base_url": Option("", check_base_url,
                             "URL of the folder this package's images/ folder is uploaded to (e.g. a CDN); "
                             "the CSV names images by it. Empty: package-relative paths"),
    "sizes": Option(dict(DEFAULT_SIZES), check_sizes,
                    f"longest side in pixels of each image size ({MIN_SIDE}-{MAX_SIDE}, growing from thumbnail to "
                    "large); sizes not given keep their default; never enlarged beyond the source"),
    "quality": Option(85, integer_check(40, 100), "JPEG quality, 40-100"),
    "status": Option("draft", choice("draft", "active"),
                     "draft: products are imported unpublished for review; active: published at once"),
    "price": Option(0, number_check(0, 1_000_000_000), "the price every product is imported with"),
    "title_column": Option("title", text,
                           "input CSV column naming the product; rows without it are titled by their prompt"),
}


@dataclass(frozen=True)
class ShopImage:
    """One image of a product and the file name its sizes are written under."""

    image: ExportImage
    name: str

    def path(self, size: str) -> str:
        return f"images/{size}/{self.name}"

    @property
    def source_size(self) -> tuple[int, int]:
        return int(self.image.row["width"]), int(self.image.row["height"])


@dataclass(frozen=True)
class Product:
    """One manifest row (variant_id) as a shop product: its identity, texts and images (first is the main one)."""

    handle: str  # unique in the package, lowercase letters, digits and '-'
    sku: str
    title: str
    description: str  # HTML
    category: str  # "weapons/swords", "" when none
    tags: tuple[str, ...]
    images: tuple[ShopImage, ...]


def _unique(stem: str, used: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`... the first not in `used` (compared without case); added to `used`."""
    candidate, number = stem, 1
    while candidate.lower() in used:
        number += 1
        candidate = f"{stem}-{number}"
    used.add(candidate.lower())
    return candidate


def plan_products(images: Sequence[ExportImage], title_column: str) -> list[Product]:
    """The images grouped into products by variant_id (in manifest order), each image with a unique
    file name: the sanitised sku (`sku`, `sku-2`... for the variations) or else the image's stem."""
    groups: dict[str, list[ExportImage]] = {}
    for image in images:
        groups.setdefault(str(image.row.get("variant_id") or image.file_name), []).append(image)
    names: set[str] = set()
    handles: set[str] = set()
    products = []
    for members in groups.values():
        members.sort(key=lambda i: (i.row.get("variation") or 0, i.file_name))
        first = members[0]
        shop_images = []
        for position, image in enumerate(members, start=1):
            stem = sanitize_component(first.sku) if first.sku else image.stem
            if first.sku and position > 1:
                stem = f"{stem}-{position}"
            shop_images.append(ShopImage(image, _unique(stem, names) + ".jpg"))
        handle_stem = _HANDLE_UNSAFE.sub("-", shop_images[0].name.rsplit(".", 1)[0].lower())
        title = str((first.row.get("extra") or {}).get(title_column) or "").strip() or first.prompt.strip()
        products.append(Product(
            handle=_unique(handle_stem[:MAX_HANDLE].strip("-") or "product", handles),
            sku=first.sku,
            title=textwrap.shorten(title, MAX_TITLE, placeholder="…"),
            description=f"<p>{html.escape(first.prompt.strip())}</p>",
            category=first.category.strip("/"),
            tags=tuple(dict.fromkeys(tag for image in members for tag in image.tags)),
            images=tuple(shop_images),
        ))
    return products


class ShopExporter(Exporter):
    """A shop's product import CSV (`COLUMNS`, the documented template) with the images in three sizes."""

    COLUMNS: ClassVar[tuple[str, ...]]
    OPTIONS = SHOP_OPTIONS
    # What to do with package-relative image paths before importing, for the result's metadata.
    RELATIVE_PATHS: ClassVar[str]

    @abc.abstractmethod
    def rows(self, products: Sequence[Product], url: Callable[[str], str], options: Mapping[str, Any]) -> list[dict]:
        """The CSV rows of `products`, naming each image file by `url(package path)`."""

    @abc.abstractmethod
    def references(self, row: Mapping[str, Any]) -> list[str]:
        """The image URLs or paths a CSV row names."""

    def expected_rows(self, products: Sequence[Product]) -> int:
        return len(products)

    @staticmethod
    def url(options: Mapping[str, Any]) -> Callable[[str], str]:
        """How the CSV names a package path: under `image_base_url`, or the path itself when it is empty."""
        base = options["image_base_url"].rstrip("/")
        return (lambda path: f"{base}/{path}") if base else (lambda path: path)

    def export(self, job: ExportJob) -> ExportResult:
        sizes = sizes_of(job.options["sizes"])
        products = plan_products(job.images, job.options["title_column"])
        for product in products:
            for shop_image in product.images:
                source = to_srgb(job.open_image(shop_image.image))
                for size, side in sizes.items():
                    data = jpeg_bytes(fit_longest_side(source, side), job.options["quality"])
                    job.write(shop_image.path(size), data, "image/jpeg")
        rows = self.rows(products, self.url(job.options), job.options)
        main = job.write(CSV_NAME, write_manifest_csv(rows, list(self.COLUMNS)), "text/csv")
        metadata: dict[str, Any] = {
            "products": len(products), "images": sum(len(p.images) for p in products), "sizes": sizes,
            "image_urls": "absolute" if job.options["image_base_url"] else "package-relative",
        }
        if not job.options["image_base_url"]:
            metadata["image_urls_note"] = self.RELATIVE_PATHS
        return ExportResult(main, metadata)

    def validate(self, job: ExportJob, result: ExportResult) -> list[str]:
        products = plan_products(job.images, job.options["title_column"])
        problems = self.csv_problems(job, products)
        for product in products:
            for shop_image in product.images:
                for size, side in sizes_of(job.options["sizes"]).items():
                    path = shop_image.path(size)
                    if not job.storage.exists(job.key(path)):
                        problems.append(f"{path} is missing")
                        continue
                    expected = longest_side_size(shop_image.source_size, side)
                    problems.extend(
                        f"{path} {problem}"
                        for problem in srgb_jpeg_problems(job.read(path), expected, MAX_IMAGE_BYTES)
                    )
        return problems

    def csv_problems(self, job: ExportJob, products: Sequence[Product]) -> list[str]:
        """What is wrong with the written CSV: its header, its number of rows, the images it names."""
        try:
            reader = csv.reader(io.StringIO(job.read(CSV_NAME).decode("utf-8"), newline=""))
            header = next(reader, [])
            rows = [dict(zip(header, line)) for line in reader]
        except (UnicodeDecodeError, csv.Error) as error:
            return [f"{CSV_NAME} cannot be read as UTF-8 CSV: {error}"]
        if header != list(self.COLUMNS):
            missing = [c for c in self.COLUMNS if c not in header]
            extra = [c for c in header if c not in self.COLUMNS]
            return [f"{CSV_NAME} header is not the {self.name} template: missing {missing}, unexpected {extra}"
                    f"{'' if missing or extra else ', columns out of order'}"]
        problems = []
        if len(rows) != self.expected_rows(products):
            problems.append(f"{CSV_NAME} has {len(rows)} rows, expected {self.expected_rows(products)} "
                            f"for {len(products)} product(s)")
        expected = Counter(ref for row in self.rows(products, self.url(job.options), job.options)
                           for ref in self.references(row))
        found = Counter(ref for row in rows for ref in self.references(row))
        if found != expected:
            problems.append(f"{CSV_NAME} names images {sorted(found - expected)[:5]} that it should not, and misses "
                            f"{sorted(expected - found)[:5]}")
        return problems


def _listed(values: Sequence[str]) -> list[str]:
    """Non-empty values of a comma-separated cell, trimmed."""
    return [v.strip() for v in values if v and v.strip()]


class ShopifyExporter(ShopExporter):
    name = "shopify"
    title = "Shopify product CSV with product images (thumbnail, medium, large sRGB JPEG)"
    COLUMNS = SHOPIFY_COLUMNS
    OPTIONS = {
        **SHOP_OPTIONS,
        "vendor": Option("", check_vendor,
                         "the products' Vendor (at least 2 characters); empty lets Shopify use the store name"),
        "product_category": Option("", text,
                                   "Shopify Standard Product Taxonomy category for every product (e.g. 'Toys & "
                                   "Games > Toys'); empty leaves it to Shopify. The batch's category goes in Type"),
    }
    RELATIVE_PATHS = ("Shopify imports images only from public URLs: upload the package's images/ folder and "
                      "export again with image_base_url set to the folder it was uploaded to")

    def expected_rows(self, products: Sequence[Product]) -> int:
        return sum(len(p.images) for p in products)  # a product's further images are rows of their own

    def rows(self, products: Sequence[Product], url: Callable[[str], str], options: Mapping[str, Any]) -> list[dict]:
        active = options["status"] == "active"
        rows = []
        for product in products:
            for position, shop_image in enumerate(product.images, start=1):
                # A further image is a row with only the handle and the image columns (the template's way).
                row = {"Handle": product.handle, "Image Src": url(shop_image.path("large")),
                       "Image Position": position, "Image Alt Text": shop_image.image.alt_text()}
                if position == 1:
                    row.update({
                        "Title": product.title, "Body (HTML)": product.description, "Vendor": options["vendor"],
                        "Product Category": options["product_category"],
                        "Type": product.category.replace("/", " > "),
                        # Shopify splits tags at commas.
                        "Tags": ", ".join(tag.replace(",", " ") for tag in product.tags),
                        "Published": "TRUE" if active else "FALSE",
                        "Option1 Name": "Title", "Option1 Value": "Default Title",  # a product without variants
                        "Variant SKU": product.sku, "Variant Grams": 0, "Variant Inventory Policy": "deny",
                        "Variant Fulfillment Service": "manual", "Variant Price": f"{options['price']:.2f}",
                        "Variant Requires Shipping": "TRUE", "Variant Taxable": "TRUE", "Gift Card": "FALSE",
                        "Variant Weight Unit": "g", "Status": "active" if active else "draft",
                    })
                rows.append(row)
        return rows

    def references(self, row: Mapping[str, Any]) -> list[str]:
        return _listed([row.get("Image Src") or ""])


def _woo_escaped(value: str) -> str:
    """A value inside a WooCommerce comma-separated cell: its commas escaped the importer's way."""
    return value.replace(",", "\\,")


class WooCommerceExporter(ShopExporter):
    name = "woocommerce"
    title = "WooCommerce product CSV with product images (thumbnail, medium, large sRGB JPEG)"
    COLUMNS = WOOCOMMERCE_COLUMNS
    RELATIVE_PATHS = ("WooCommerce downloads images from URLs (a relative path is looked up in the site's "
                      "uploads folder): upload the package's images/ folder and export again with image_base_url "
                      "set to the folder it was uploaded to")
    # The importer has no alt text column; this file gives each image's alt text to set in the media library.
    ALT_TEXT_NAME = "image-alt-text.csv"
    ALT_TEXT_COLUMNS = ["Image", "Alt text"]

    def rows(self, products: Sequence[Product], url: Callable[[str], str], options: Mapping[str, Any]) -> list[dict]:
        return [
            {
                "Type": "simple", "SKU": product.sku, "Name": product.title,
                "Published": 1 if options["status"] == "active" else -1,  # -1 is a draft
                "Is featured?": 0, "Visibility in catalog": "visible", "Description": product.description,
                "Tax status": "taxable", "In stock?": 1, "Regular price": f"{options['price']:.2f}",
                "Categories": " > ".join(_woo_escaped(part) for part in product.category.split("/") if part),
                "Tags": ", ".join(_woo_escaped(tag) for tag in product.tags),
                "Images": ", ".join(url(i.path("large")) for i in product.images),  # the first is the main one
                "Position": 0,
            }
            for product in products
        ]

    def references(self, row: Mapping[str, Any]) -> list[str]:
        return _listed((row.get("Images") or "").split(","))

    def alt_text_rows(self, products: Sequence[Product], url: Callable[[str], str]) -> list[dict]:
        return [{"Image": url(i.path("large")), "Alt text": i.image.alt_text()} for p in products for i in p.images]

    def export(self, job: ExportJob) -> ExportResult:
        result = super().export(job)
        rows = self.alt_text_rows(plan_products(job.images, job.options["title_column"]), self.url(job.options))
        job.write(self.ALT_TEXT_NAME, write_manifest_csv(rows, self.ALT_TEXT_COLUMNS), "text/csv")
        return ExportResult(result.main, {**result.metadata, "alt_text": self.ALT_TEXT_NAME})

    def validate(self, job: ExportJob, result: ExportResult) -> list[str]:
        problems = super().validate(job, result)
        products = plan_products(job.images, job.options["title_column"])
        expected = write_manifest_csv(self.alt_text_rows(products, self.url(job.options)), self.ALT_TEXT_COLUMNS)
        if not job.storage.exists(job.key(self.ALT_TEXT_NAME)):
            problems.append(f"{self.ALT_TEXT_NAME} is missing")
        elif job.read(self.ALT_TEXT_NAME) != expected:
            problems.append(f"{self.ALT_TEXT_NAME} does not list each image's alt text")
        return problems


def _magento_item(value: str) -> str:
    """A value inside a Magento comma-separated cell: Magento has no escape, so its commas become ';'."""
    return value.replace(",", ";")


class MagentoExporter(ShopExporter):
    name = "magento"
    title = "Magento 2 catalog_product import CSV with base, small and thumbnail images (sRGB JPEG)"
    COLUMNS = MAGENTO_COLUMNS
    OPTIONS = {
        **SHOP_OPTIONS,
        "attribute_set_code": Option("Default", nonempty_text, "attribute set of the imported products"),
        "product_websites": Option("base", nonempty_text, "website code(s) the products are sold on, comma-separated"),
        "root_category": Option("Default Category", nonempty_text,
                                "root category the batch's category paths are placed under"),
    }
    RELATIVE_PATHS = ("Magento reads relative image paths from the import's Images File Directory: copy the "
                      "package there keeping its images/ folder (e.g. var/import/images/images/large/...), or export "
                      "again with image_base_url set to the public folder the images/ folder was uploaded to")

    def rows(self, products: Sequence[Product], url: Callable[[str], str], options: Mapping[str, Any]) -> list[dict]:
        rows = []
        for product in products:
            # Magento needs a sku; a row without one is known by its handle (unique, and short enough).
            sku = product.sku or product.handle
            if len(sku) > MAX_MAGENTO_SKU:
                raise ValueError(
                    f"sku {quote(sku)} is {len(sku)} characters; Magento accepts at most {MAX_MAGENTO_SKU}")
            main, further = product.images[0], product.images[1:]
            alt = main.image.alt_text()
            path = "/".join(_magento_item(part) for part in product.category.split("/") if part)
            rows.append({
                "sku": sku, "attribute_set_code": options["attribute_set_code"], "product_type": "simple",
                "categories": f"{options['root_category']}/{path}" if path else "",
                "product_websites": options["product_websites"], "name": product.title,
                "description": product.description,
                "product_online": 1 if options["status"] == "active" else 2,  # 2 is disabled
                "visibility": "Catalog, Search", "price": f"{options['price']:.2f}",
                # Set rather than derived from the name, which two products may share.
                "url_key": product.handle,
                "meta_keywords": ", ".join(product.tags),
                "base_image": url(main.path("large")), "base_image_label": alt,
                "small_image": url(main.path("medium")), "small_image_label": alt,
                "thumbnail_image": url(main.path("thumbnail")), "thumbnail_image_label": alt,
                "additional_images": ",".join(url(i.path("large")) for i in further),
                "additional_image_labels": ",".join(_magento_item(i.image.alt_text()) for i in further),
            })
        return rows

    def references(self, row: Mapping[str, Any]) -> list[str]:
        single = [row.get(c) or "" for c in ("base_image", "small_image", "thumbnail_image")]
        return _listed([*single, *(row.get("additional_images") or "").split(",")])
