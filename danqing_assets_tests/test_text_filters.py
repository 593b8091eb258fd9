"""Each text filter on real text from ../shared/realworld, plus the edge cases it exists for."""

from collections.abc import Sequence

import polars as pl
import pytest

from danqing_assets.curation.text import filters as f
from danqing_assets.curation.text.chain import TextStageConfig, build_filters, run_text_stage
from danqing_assets.curation.text.lexicons import combined, shipped
from danqing_assets.curation.text.refine import refine_captions
from danqing_assets.curation.text.safety import load_text_classifier
from danqing_assets.curation.text.tokens import char_entropy, unk_counts, word_count
from danqing_assets_tests.text_samples import (
    coco_human_captions,
    coco_machine_captions,
    japanese_warc_alts,
    news_page_alts,
    pairs_frame,
)


def run(alts, config=TextStageConfig(), **kw):
    return run_text_stage(pairs_frame(alts, **kw), build_filters(config))


def reasons_of(text_filter, alts, texts=None, **kw):
    frame = pairs_frame(alts, **kw).with_columns(text=pl.Series(texts if texts is not None else alts))
    return text_filter.reasons(frame).to_list()


# --- refinement --------------------------------------------------------------------
def test_the_papers_refinement_example():
    assert refine_captions(pl.Series(["两位老年男性&正在為¥朋友們的素食晚餐準備燒烤"])).to_list() == [
        "两位老年男性正在为朋友们的素食晚餐准备烧烤"
    ]


@pytest.mark.parametrize(
    "raw, refined",
    [
        ("【高清】雨后的稻田边，情侣采摘灯笼！！！🔥🔥", "雨后的稻田边，情侣采摘灯笼"),
        ("★★★忙碌的饺子摆放在果园★★★ 😂", "忙碌的饺子摆放在果园"),
        ("👨‍👩‍👧 家庭 合影 🇨🇳", "家庭合影"),
        ("ｉＰｈｏｎｅ　１５　新 品 发布会", "iPhone 15 新品发布会"),
        ("臺灣的夜市裡，攤販們正在準備滷肉飯", "台湾的夜市里，摊贩们正在准备卤肉饭"),
        ("「你好」。", "「你好」。"),
        ("  \t\n ", ""),
    ],
)
def test_refinement_cases(raw, refined):
    assert refine_captions(pl.Series([raw])).to_list() == [refined]


def test_refined_text_goes_to_text_and_the_original_stays_in_alt_text():
    kept, _, _ = run(["兩位老年男性正在為朋友們的素食晚餐準備燒烤"])
    assert kept["alt_text"].to_list() == ["兩位老年男性正在為朋友們的素食晚餐準備燒烤"]
    assert kept["text"].to_list() == ["两位老年男性正在为朋友们的素食晚餐准备烧烤"]


# --- real captions ---------------------------------------------------------------------
def test_human_written_coco_cn_captions_overwhelmingly_pass():
    captions = coco_human_captions()
    kept, rejected, report = run(captions)
    pass_rate = kept.height / len(captions)
    # measured: 4,709 of 4,712 (99.94 %): two too short, one without a noun
    assert pass_rate >= 0.995, report.reasons
    assert kept.height + rejected.height == len(captions)


def test_machine_translated_coco_captions_mostly_pass():
    captions = coco_machine_captions()
    kept, _, report = run(captions)
    # measured: 96.0 %; the drops are short translations (< 5 words) and a few without a noun
    assert kept.height / len(captions) >= 0.95, report.reasons
    assert set(report.reasons) <= {"length:too_short", "no_noun", "boilerplate:generic", "exact_duplicate"}


def test_japanese_alts_of_the_clueweb_warc_are_all_dropped():
    alts = japanese_warc_alts()
    assert len(alts) > 20
    kept, rejected, report = run(alts)
    assert kept.height == 0
    assert report.reasons["language:japanese"] >= len(alts) // 2  # kana; the rest go for other reasons


def test_boilerplate_and_file_name_alts_from_the_news_pages_are_dropped():
    alts = news_page_alts("cjn_1.html") + news_page_alts("wechat_2.html") + news_page_alts("qq_qq.html")
    alts += news_page_alts("test_list_page_tieba_1.html")
    kept, rejected, _ = run(alts)
    dropped = dict(zip(rejected["alt_text"], rejected["reason"]))
    assert dropped["点击查看高清原图"] in ("boilerplate:generic", "exact_duplicate")
    assert dropped["贴吧图片"] in ("boilerplate:generic", "exact_duplicate")
    assert dropped["qq_logo"] == "boilerplate:generic"
    assert dropped["武汉音乐学院迎新现场，土味情话齁甜，新生看了想恋爱_1"] == "boilerplate:title_index"
    kept_texts = set(kept["text"])
    assert not kept_texts & {"点击查看高清原图", "贴吧图片", "qq_logo"}
    # a real caption on the same page survives, its doubled ellipsis normalised
    assert kept.filter(pl.col("alt_text") == "观影、逛展、看演出……文化活动扮靓双节“佳”期")["text"].to_list() == [
        "观影、逛展、看演出…文化活动扮靓双节“佳”期"
    ]


# --- one filter at a time ------------------------------------------------------------
@pytest.mark.parametrize(
    "alt, reason",
    [
        ("IMG_3886.jpg", "boilerplate:file_name"),
        ("98a8e084f2bc4be1.jpg (781×451)", "boilerplate:file_name"),
        ("DSC01234.JPG", "boilerplate:file_name"),
        ("微信图片_20260919767649.png", "boilerplate:file_name"),
        ("e3b0c44298fc1c149afbf4c8996fb924", "boilerplate:file_name"),
        ("https://img.example.cn/a/b.jpg", "boilerplate:url"),
        ("www.example.cn/photo", "boilerplate:url"),
        ("2026年5月28日", "boilerplate:number_or_date"),
        ("2026-01-20", "boilerplate:number_or_date"),
        ("16212", "boilerplate:number_or_date"),
        ("西湖边的春天美景-图1", "boilerplate:title_index"),
        ("西湖边的春天美景（图2）", "boilerplate:title_index"),
        ("西湖边的春天美景 图3", "boilerplate:title_index"),
        ("图片", "boilerplate:generic"),
        ("点击查看大图", "boilerplate:generic"),
        ("看不清？换一换", "boilerplate:generic"),
        ("LOGO", "boilerplate:generic"),
        ("样例新闻网logo", "boilerplate:generic"),
        ("赞赏二维码", "boilerplate:generic"),
        ("西湖边的春天，游客们在断桥上拍照留念", None),
        ("2024年的第一场雪落在故宫的红墙上", None),
    ],
)
def test_boilerplate(alt, reason):
    text = refine_captions(pl.Series([alt])).to_list()
    assert reasons_of(f.Boilerplate(shipped("generic_alts")), [alt], text) == [reason]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("ブラウニー ブリーフケース【ヘッドポーター", "language:japanese"),
        ("東京駅の前で写真を撮る観光客", "language:japanese"),
        ("서울의 밤거리 풍경 사진", "language:korean"),
        ("A young photographer carrying paper umbrellas in the park", "language:too_few_han_characters"),
        ("这是一张 photo of a beautiful sunset over the mountains and the sea", "language:too_few_han_characters"),
        ("海平面上倒映着落日的余晖", None),  # all Han: CLD2 would say Japanese, the script says Chinese
        ("小米手机 Redmi Note 13 Pro 发布会现场", None),
        ("台湾的夜市里，摊贩们正在准备卤肉饭", None),
    ],
)
def test_chinese_identification(text, reason):
    assert reasons_of(f.ChineseText(), [text]) == [reason]


def test_word_length_bounds_use_jieba_words():
    assert word_count("两位老年男性正在为朋友们的素食晚餐准备烧烤，真好！") == 14
    filt = f.WordLength(5, 60)
    texts = ["风景", "书桌上摆放着一台笔记本电脑", "雨伞批发" * 40, "一只小猫在书桌上睡觉"]  # 1, 4, 80, 5 words
    assert reasons_of(filt, texts) == ["length:too_short", "length:too_short", "length:too_long", None]


def test_noun_unk_entropy_and_sensitive_words():
    assert reasons_of(f.HasNoun(), ["正在努力地学习和思考", "一只猫在沙发上睡觉"]) == ["no_noun", None]
    rare = "生僻字" + "𠀀" * 6 + "的写法"
    assert unk_counts(pl.Series([rare, "生僻字𠀀𠀀的写法", "普通的句子"])).to_list() == [6, 2, 0]
    assert reasons_of(f.UnknownTokens(5), [rare, "生僻字𠀀𠀀的写法"]) == ["too_many_unk_tokens", None]
    assert char_entropy("哈哈哈哈哈哈") == 0.0 and char_entropy("美女美女美女") == 1.0
    assert reasons_of(f.InformationDensity(2.0), ["哈哈哈哈哈哈哈哈哈哈", "一只猫在沙发上睡觉"]) == ["low_entropy", None]
    words = combined("sensitive_words", None)
    assert reasons_of(f.SensitiveWords(words), ["香港最快开奖现场直播", "一只猫在沙发上睡觉"]) == ["sensitive_word", None]


def test_domain_blocklist_matches_hosts_and_parents_of_image_and_page(tmp_path):
    extra = tmp_path / "blocked.txt"
    extra.write_text("# ours\nspam.example.cn\n")
    filt = f.DomainBlocklist(combined("domain_blocklist", extra))
    urls = ["http://img.spam.example.cn/a.jpg", "https://stats.g.doubleclick.net/p.gif",
            "http://notspam.example.cn/a.jpg", "http://user:pw@spam.example.cn:8080/x.jpg"]
    assert reasons_of(filt, ["x"] * 4, urls=urls) == ["blocked_domain", "blocked_domain", None, "blocked_domain"]
    assert reasons_of(filt, ["x"], urls=["http://ok.cn/a.jpg"], page_url="http://www.spam.example.cn/") == ["blocked_domain"]


def test_exact_duplicates_are_found_across_parts_of_a_snapshot():
    chain = build_filters(TextStageConfig())
    first = pairs_frame(["一只猫在沙发上睡觉", "一只猫在沙发上睡觉", "一只狗在草地上奔跑"], urls=["http://a/1.jpg"] * 2 + ["http://a/2.jpg"])
    second = pairs_frame(["一只猫在沙发上睡覺", "一只猫在沙发上睡觉"], urls=["http://a/1.jpg", "http://a/3.jpg"])
    kept1, _, r1 = run_text_stage(first, chain)
    kept2, _, r2 = run_text_stage(second, chain)  # 睡覺 refines to 睡觉: the same pair as in part one
    assert kept1.height == 2 and r1.reasons["exact_duplicate"] == 1
    assert kept2["url"].to_list() == ["http://a/3.jpg"] and r2.reasons["exact_duplicate"] == 1


class KeywordSafetyModel:
    """A test classifier behind the plug-in interface: scores are read from a file of words."""

    def __init__(self, model_path: str | None) -> None:
        self.words = open(model_path, encoding="utf-8").read().split()

    def unsafe_scores(self, texts: Sequence[str]) -> list[float]:
        return [1.0 if any(w in t for w in self.words) else 0.0 for t in texts]


def test_a_configured_safety_classifier_is_loaded_and_applied(tmp_path):
    model = tmp_path / "model.txt"
    model.write_text("危险物品")
    config = TextStageConfig(safety_classifier=f"{__name__}:KeywordSafetyModel", safety_model_path=str(model))
    kept, rejected, report = run(["仓库里堆放着危险物品和化学药剂", "一只猫在沙发上睡觉，阳光很好"], config)
    assert kept["text"].to_list() == ["一只猫在沙发上睡觉，阳光很好"]
    assert rejected["reason"].to_list() == ["unsafe_text"] and "text_safety_classifier" in report.steps
    with pytest.raises(ValueError, match="package.module:factory"):
        load_text_classifier("no_colon", None)
    with pytest.raises(TypeError, match="unsafe_scores"):
        load_text_classifier("builtins:str", None)


def test_the_report_adds_up_and_rejects_carry_their_reason():
    alts = coco_human_captions()[:300] + japanese_warc_alts() + ["图片", "IMG_0001.jpg", "风景", ""]
    kept, rejected, report = run(alts)
    assert report.rows_in == len(alts) == kept.height + rejected.height
    assert sum(report.reasons.values()) == rejected.height
    steps = list(report.steps.values())
    assert steps[0][0] == len(alts) and steps[-1][1] == kept.height
    assert all(a[1] == b[0] for a, b in zip(steps, steps[1:]))  # each filter's output is the next one's input
    assert rejected["reason"].null_count() == 0 and set(rejected["filter"]) <= set(report.steps)
    assert all(len(v) <= 3 for v in report.examples.values()) and set(report.examples) == set(report.reasons)
    assert kept["uid"].n_unique() == kept.height and kept["word_count"].min() >= 5
