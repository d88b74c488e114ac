"""The shop exporters: documented CSV templates, one product per row, SKU file names, sRGB JPEG sizes,
alt text, the CSV injection guard, their options, and validation reading the package back."""

from __future__ import annotations

import csv
import io

import pytest
from PIL import Image

from assetql_dagster.domain.web_images import srgb_icc
from assetql_dagster.pipeline.exporters.base import ExportImage, ExportOptionsError
from assetql_dagster.pipeline.exporters.shop import (
    CSV_NAME,
    MagentoExporter,
    ShopifyExporter,
    WooCommerceExporter,
)
from harness.export_jobs import image_row, make_job, noise_image

EXPORTERS = [ShopifyExporter(), WooCommerceExporter(), MagentoExporter()]
IDS = [e.name for e in EXPORTERS]

# The templates' header lines as the documentation's sample files give them.
SHOPIFY_TEMPLATE = (
    "Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Published,Option1 Name,Option1 Value,Option2 Name,"
    "Option2 Value,Option3 Name,Option3 Value,Variant SKU,Variant Grams,Variant Inventory Tracker,"
    "Variant Inventory Qty,Variant Inventory Policy,Variant Fulfillment Service,Variant Price,"
    "Variant Compare At Price,Variant Requires Shipping,Variant Taxable,Variant Barcode,Image Src,Image Position,"
    "Image Alt Text,Gift Card,SEO Title,SEO Description,Google Shopping / Google Product Category,"
    "Google Shopping / Gender,Google Shopping / Age Group,Google Shopping / MPN,Google Shopping / Condition,"
    "Google Shopping / Custom Product,Variant Image,Variant Weight Unit,Variant Tax Code,Cost per item,"
    "Included / United States,Price / United States,Compare At Price / United States,Included / International,"
    "Price / International,Compare At Price / International,Status"
)
WOOCOMMERCE_TEMPLATE = (
    'ID,Type,SKU,Name,Published,"Is featured?","Visibility in catalog","Short description",Description,'
    '"Date sale price starts","Date sale price ends","Tax status","Tax class","In stock?",Stock,'
    '"Backorders allowed?","Sold individually?","Weight (lbs)","Length (in)","Width (in)","Height (in)",'
    '"Allow customer reviews?","Purchase note","Sale price","Regular price",Categories,Tags,"Shipping class",Images,'
    '"Download limit","Download expiry days",Parent,"Grouped products",Upsells,Cross-sells,"External URL",'
    '"Button text",Position,"Attribute 1 name","Attribute 1 value(s)","Attribute 1 visible","Attribute 1 global",'
    '"Attribute 2 name","Attribute 2 value(s)","Attribute 2 visible","Attribute 2 global",'
    '"Meta: _wpcom_is_markdown","Download 1 name","Download 1 URL","Download 2 name","Download 2 URL"'
)
MAGENTO_TEMPLATE = (
    "sku,store_view_code,attribute_set_code,product_type,categories,product_websites,name,description,"
    "short_description,weight,product_online,tax_class_name,visibility,price,special_price,special_price_from_date,"
    "special_price_to_date,url_key,meta_title,meta_keywords,meta_description,base_image,base_image_label,"
    "small_image,small_image_label,thumbnail_image,thumbnail_image_label,swatch_image,swatch_image_label,"
    "created_at,updated_at,new_from_date,new_to_date,display_product_options_in,map_price,msrp_price,map_enabled,"
    "gift_message_available,custom_design,custom_design_from,custom_design_to,custom_layout_update,page_layout,"
    "product_options_container,msrp_display_actual_price_type,country_of_manufacture,additional_attributes,qty,"
    "out_of_stock_qty,use_config_min_qty,is_qty_decimal,allow_backorders,use_config_backorders,min_cart_qty,"
    "use_config_min_sale_qty,max_cart_qty,use_config_max_sale_qty,is_in_stock,notify_on_stock_below,"
    "use_config_notify_stock_qty,manage_stock,use_config_manage_stock,use_config_qty_increments,qty_increments,"
    "use_config_enable_qty_inc,enable_qty_increments,is_decimal_divided,website_id,related_skus,related_position,"
    "crosssell_skus,crosssell_position,upsell_skus,upsell_position,additional_images,additional_image_labels,"
    "hide_from_product_page,custom_options,bundle_price_type,bundle_sku_type,bundle_price_view,bundle_weight_type,"
    "bundle_values,bundle_shipment_type,configurable_variations,configurable_variation_labels,associated_skus"
)


def template(line: str) -> list[str]:
    return next(csv.reader([line]))


def read_csv(job, name: str = CSV_NAME) -> tuple[list[str], list[dict]]:
    lines = list(csv.reader(io.StringIO(job.read(name).decode("utf-8"), newline="")))
    return lines[0], [dict(zip(lines[0], line)) for line in lines[1:]]


def variation(row: dict, number: int) -> dict:
    """`row`'s image as the row's `number`th variation: the same variant_id, its own file."""
    stem = f"{row['variant_id']}-v{number}"
    return {**row, "variation": number, "file_name": f"{stem}.png", "raw_key": f"raw/{row['batch']}/{stem}.png"}


def exported(tmp_path, exporter, rows=None, options=None, images=None):
    job = make_job(tmp_path, exporter, rows, options, images)
    return job, exporter.export(job)


def test_column_lists_are_the_documented_templates():
    shopify, woocommerce, magento = (template(t) for t in (SHOPIFY_TEMPLATE, WOOCOMMERCE_TEMPLATE, MAGENTO_TEMPLATE))
    # Left out: Shopify's columns of the sample store's markets, WooCommerce's numbered attribute and
    # download groups and the sample's meta column, and Magento's columns of other product types.
    assert list(ShopifyExporter.COLUMNS) == [c for c in shopify if " / United States" not in c and
                                             not c.endswith(" / International")]
    assert list(WooCommerceExporter.COLUMNS) == woocommerce[: woocommerce.index("Position") + 1]
    assert list(MagentoExporter.COLUMNS) == magento[: magento.index("hide_from_product_page") + 1]


@pytest.mark.parametrize("exporter", EXPORTERS, ids=IDS)
def test_writes_exactly_the_template_header_and_validates(tmp_path, exporter):
    job, result = exported(tmp_path, exporter)
    header, rows = read_csv(job)
    assert header == list(exporter.COLUMNS)
    assert result.main == job.key(CSV_NAME)
    assert result.metadata["products"] == 3 and result.metadata["images"] == 3
    assert exporter.validate(job, result) == []


def test_shopify_product_rows_and_further_image_rows(tmp_path):
    first = image_row(0, sku="SW-1")
    rows = [first, variation(first, 2), image_row(1, category="weapons/axes")]
    job, _ = exported(tmp_path, ShopifyExporter(), rows, {"status": "active", "price": 12.5, "vendor": "Forge"})
    _, lines = read_csv(job)
    assert [(line["Handle"], line["Image Position"]) for line in lines] == [("sw-1", "1"), ("sw-1", "2"),
                                                                             ("item-001", "1")]
    product, further, other = lines
    assert product["Title"] == first["prompt"] and product["Variant SKU"] == "SW-1"
    assert product["Type"] == "weapons > swords" and product["Tags"] == "sword, steel, blue"
    assert (product["Published"], product["Status"], product["Variant Price"]) == ("TRUE", "active", "12.50")
    assert (product["Option1 Name"], product["Option1 Value"], product["Vendor"]) == ("Title", "Default Title", "Forge")
    # A further image of the product: only the handle and the image columns.
    assert {k for k, v in further.items() if v} == {"Handle", "Image Src", "Image Position", "Image Alt Text"}
    assert further["Image Src"] == "images/large/SW-1-2.jpg"
    assert other["Variant SKU"] == "" and other["Image Src"] == "images/large/item-001.jpg"


def test_woocommerce_one_row_per_product_with_hierarchy_and_all_images(tmp_path):
    first = image_row(0, sku="SW-1", category="weapons/swords, daggers", tags=("sword", "steel, blued"))
    job, result = exported(tmp_path, WooCommerceExporter(), [first, variation(first, 2), image_row(1, category="")])
    _, lines = read_csv(job)
    assert len(lines) == 2
    product, other = lines
    assert product["Images"] == "images/large/SW-1.jpg, images/large/SW-1-2.jpg"
    # ">" for the hierarchy; commas inside a name escaped as the importer reads them.
    assert product["Categories"] == "weapons > swords\\, daggers"
    assert product["Tags"] == "sword, steel\\, blued"
    assert (product["Published"], product["Type"], product["SKU"]) == ("-1", "simple", "SW-1")
    assert other["Categories"] == "" and other["Images"] == "images/large/item-001.jpg"
    assert result.metadata["alt_text"] == "image-alt-text.csv"


def test_magento_images_by_role_and_category_under_the_root(tmp_path):
    first = image_row(0, sku="SW-1")
    job, _ = exported(tmp_path, MagentoExporter(), [first, variation(first, 2), variation(first, 3), image_row(1)],
                      {"root_category": "Shop", "product_websites": "base,eu"})
    _, lines = read_csv(job)
    product, other = lines
    assert product["categories"] == "Shop/weapons/swords" and product["product_websites"] == "base,eu"
    assert (product["base_image"], product["small_image"], product["thumbnail_image"]) == (
        "images/large/SW-1.jpg", "images/medium/SW-1.jpg", "images/thumbnail/SW-1.jpg")
    assert product["additional_images"] == "images/large/SW-1-2.jpg,images/large/SW-1-3.jpg"
    assert product["product_online"] == "2" and product["url_key"] == "sw-1"
    # Without a sku the product is known by its handle, which Magento needs as its sku.
    assert other["sku"] == other["url_key"] == "item-001"


def test_magento_refuses_a_sku_longer_than_it_accepts(tmp_path):
    job = make_job(tmp_path, MagentoExporter(), [image_row(0, sku="S" * 65)])
    with pytest.raises(ValueError, match=r"sku 'SSS.*' is 65 characters; Magento accepts at most 64"):
        MagentoExporter().export(job)


def test_sku_based_file_names_sanitised_and_unique(tmp_path):
    rows = [image_row(0, sku="Sword/01 é"), image_row(1, sku="sword-01-e"), image_row(2)]
    job, _ = exported(tmp_path, ShopifyExporter(), rows)
    names = sorted(key.rsplit("/", 1)[1] for key in job.written if "/images/large/" in key)
    # The second sku sanitises to the same name (whatever its case), so it gets a suffix.
    assert names == ["Sword-01-e.jpg", "item-002.jpg", "sword-01-e-2.jpg"]
    _, lines = read_csv(job)
    assert [line["Handle"] for line in lines] == ["sword-01-e", "sword-01-e-2", "item-002"]


@pytest.mark.parametrize("exporter", EXPORTERS, ids=IDS)
def test_sizes_are_srgb_jpegs_of_the_longest_side_never_enlarged(tmp_path, exporter):
    rows = [image_row(0, width=300, height=200)]
    job, result = exported(tmp_path, exporter, rows, {"sizes": {"thumbnail": 64, "medium": 128}},
                           [noise_image(0, (300, 200))])
    assert result.metadata["sizes"] == {"thumbnail": 64, "medium": 128, "large": 2048}
    for size, expected in {"thumbnail": (64, 43), "medium": (128, 85), "large": (300, 200)}.items():
        with Image.open(io.BytesIO(job.read(f"images/{size}/item-000.jpg"))) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", expected)
            assert image.info["icc_profile"] == srgb_icc()


def test_transparent_sources_are_flattened_to_rgb(tmp_path):
    job, result = exported(tmp_path, MagentoExporter(), [image_row(0)], images=[noise_image(0, mode="RGBA")])
    with Image.open(io.BytesIO(job.read("images/medium/item-000.jpg"))) as image:
        assert (image.mode, image.size) == ("RGB", (256, 256))
    assert MagentoExporter().validate(job, result) == []


def test_alt_text_from_prompt_and_tags(tmp_path):
    first = image_row(0, sku="SW-1", prompt="a blue sword, game icon")
    rows = [first, variation(first, 2)]
    alt = ExportImage(first).alt_text()
    assert alt == "a blue sword, game icon (sword, steel, blue)"
    shopify, _ = exported(tmp_path / "s", ShopifyExporter(), rows)
    assert [line["Image Alt Text"] for line in read_csv(shopify)[1]] == [alt, alt]
    magento, _ = exported(tmp_path / "m", MagentoExporter(), rows)
    product = read_csv(magento)[1][0]
    assert product["base_image_label"] == product["small_image_label"] == product["thumbnail_image_label"] == alt
    # Magento splits the labels list at commas and has no escape.
    assert product["additional_image_labels"] == "a blue sword; game icon (sword; steel; blue)"
    woocommerce, _ = exported(tmp_path / "w", WooCommerceExporter(), rows,
                              {"image_base_url": "https://cdn.example.com/shop"})
    assert read_csv(woocommerce, "image-alt-text.csv")[1] == [
        {"Image": "https://cdn.example.com/shop/images/large/SW-1.jpg", "Alt text": alt},
        {"Image": "https://cdn.example.com/shop/images/large/SW-1-2.jpg", "Alt text": alt},
    ]


def test_title_from_the_title_column_else_the_prompt(tmp_path):
    titled = {**image_row(0), "extra": {"name": "Blue Sword"}}
    job, _ = exported(tmp_path, WooCommerceExporter(), [titled, image_row(1, prompt="x " * 200)],
                      {"title_column": "name"})
    titles = [line["Name"] for line in read_csv(job)[1]]
    assert titles[0] == "Blue Sword"
    assert len(titles[1]) <= 255 and titles[1].endswith("…")


@pytest.mark.parametrize("exporter", EXPORTERS, ids=IDS)
def test_image_urls_under_the_base_url_or_package_relative(tmp_path, exporter):
    job, result = exported(tmp_path / "a", exporter, [image_row(0)], {"image_base_url": "https://cdn.example.com/s/"})
    assert "https://cdn.example.com/s/images/large/item-000.jpg" in job.read(CSV_NAME).decode()
    assert result.metadata["image_urls"] == "absolute" and "image_urls_note" not in result.metadata
    assert exporter.validate(job, result) == []
    job, result = exported(tmp_path / "b", exporter, [image_row(0)])
    assert ",images/large/item-000.jpg" in job.read(CSV_NAME).decode()
    assert result.metadata["image_urls"] == "package-relative"
    assert "image_base_url" in result.metadata["image_urls_note"]


def test_cells_that_a_spreadsheet_would_run_are_neutralised(tmp_path):
    row = image_row(0, sku="-2+3", prompt='=HYPERLINK("http://evil.example","click")', tags=("@SUM(1)", "+x"))
    job, _ = exported(tmp_path, ShopifyExporter(), [row], {"vendor": "-Evil", "product_category": "=1+1"})
    product = read_csv(job)[1][0]
    assert product["Title"] == '\'=HYPERLINK("http://evil.example","click")'
    assert product["Image Alt Text"].startswith("'=HYPERLINK")
    assert product["Tags"] == "'@SUM(1), +x"
    assert (product["Variant SKU"], product["Vendor"], product["Product Category"]) == ("'-2+3", "'-Evil", "'=1+1")
    # The description starts with its HTML tag, so it needs no prefix.
    assert product["Body (HTML)"].startswith("<p>=HYPERLINK(&quot;")


@pytest.mark.parametrize(("exporter", "options", "message"), [
    (ShopifyExporter(), {"sizes": {"huge": 4000}}, "sizes names unknown size(s) ['huge']"),
    (ShopifyExporter(), {"sizes": {"large": 8000}}, "sizes large must be an integer from 16 to 4096, got 8000"),
    (ShopifyExporter(), {"sizes": {"thumbnail": 700}},
     "sizes must grow from thumbnail to large, got {'thumbnail': 700, 'medium': 600, 'large': 2048}"),
    (ShopifyExporter(), {"sizes": 600}, "sizes must be a mapping of thumbnail, medium, large"),
    (WooCommerceExporter(), {"image_base_url": "ftp://cdn.example.com"}, "image_base_url must be empty or the http(s)"),
    (WooCommerceExporter(), {"image_base_url": "https://cdn.example.com/a,b"}, "got 'https://cdn.example.com/a,b'"),
    (WooCommerceExporter(), {"image_base_url": "https://cdn.example.com/?v=1"}, "without query"),
    (WooCommerceExporter(), {"status": "live"}, "status must be one of draft, active, got 'live'"),
    (MagentoExporter(), {"price": -1}, "price must be a number from 0 to 1e+09, got -1"),
    (MagentoExporter(), {"quality": 101}, "quality must be an integer from 40 to 100, got 101"),
    (MagentoExporter(), {"root_category": "  "}, "root_category must not be empty, got '  '"),
    (MagentoExporter(), {"vendor": "Acme"}, "unknown option 'vendor'"),
    (ShopifyExporter(), {"vendor": "A"}, "vendor must be empty or at least 2 characters, got 'A'"),
    (ShopifyExporter(), {"image_base": "https://x"}, "did you mean 'image_base_url'?"),
])
def test_options_errors_name_the_option_and_value(exporter, options, message):
    with pytest.raises(ExportOptionsError) as raised:
        exporter.parse_options(options)
    assert message in str(raised.value)


@pytest.mark.parametrize("exporter", EXPORTERS, ids=IDS)
def test_validate_finds_a_missing_image(tmp_path, exporter):
    job, result = exported(tmp_path, exporter)
    job.storage.local_path(job.key("images/medium/item-001.jpg")).unlink()
    assert exporter.validate(job, result) == ["images/medium/item-001.jpg is missing"]


def test_validate_finds_wrong_image_files(tmp_path):
    exporter = ShopifyExporter()
    job, result = exported(tmp_path, exporter)
    buffer = io.BytesIO()
    noise_image(5, (100, 100)).save(buffer, "PNG")
    job.write("images/large/item-000.jpg", buffer.getvalue())
    job.write("images/thumbnail/item-001.jpg", job.read("images/large/item-001.jpg"))
    problems = exporter.validate(job, result)
    assert "images/large/item-000.jpg is PNG, not JPEG" in problems
    assert "images/large/item-000.jpg is 100×100, not 256×256" in problems
    assert "images/large/item-000.jpg has no embedded ICC profile" in problems
    assert "images/thumbnail/item-001.jpg is 256×256, not 150×150" in problems


@pytest.mark.parametrize("exporter", EXPORTERS, ids=IDS)
def test_validate_finds_a_wrong_header_or_rows(tmp_path, exporter):
    job, result = exported(tmp_path, exporter)
    text = job.read(CSV_NAME).decode()
    header, _, body = text.partition("\r\n")
    job.write(CSV_NAME, ("Surprise," + header + "\r\n" + body).encode())
    assert exporter.validate(job, result) == [
        f"{CSV_NAME} header is not the {exporter.name} template: missing [], unexpected ['Surprise']"]
    job.write(CSV_NAME, text.rsplit("\r\n", 2)[0].encode() + b"\r\n")  # the last row dropped
    problems = exporter.validate(job, result)
    assert problems[0].startswith(f"{CSV_NAME} has 2 rows, expected 3")
    assert "misses ['images/" in problems[1]


def test_woocommerce_validate_finds_a_missing_alt_text_file(tmp_path):
    exporter = WooCommerceExporter()
    job, result = exported(tmp_path, exporter)
    job.storage.local_path(job.key("image-alt-text.csv")).unlink()
    assert exporter.validate(job, result) == ["image-alt-text.csv is missing"]
