"""Word lists and text makers for the sample crawl.

Every word here was written for this project; nothing is copied from a corpus,
so the generated pages can ship with the demo. Captions are assembled from
tokens, and a caption remembers how many word tokens it has: that count is the
ground truth for a caption-length filter (a Chinese segmenter finds about as
many words; good captions keep well inside the 5–60 word band).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# --- Simplified Chinese -------------------------------------------------------
HANS_TIMES = ("清晨", "傍晚", "深夜", "午后", "春天", "秋天", "冬日", "夏夜", "周末", "雨后", "黄昏", "中午")
HANS_PLACES = (
    "湖边",
    "老街上",
    "公园里",
    "海滩上",
    "山顶",
    "校园里",
    "菜市场",
    "火车站",
    "博物馆",
    "咖啡馆",
    "田野间",
    "小巷深处",
    "广场上",
    "河岸边",
    "古镇",
    "雪山脚下",
    "草原上",
    "书店里",
    "厨房里",
    "体育馆",
    "码头",
    "花园里",
    "果园",
    "稻田边",
    "夜市",
)
HANS_ADJS = (
    "年轻的",
    "年迈的",
    "可爱的",
    "忙碌的",
    "安静的",
    "热闹的",
    "金黄色的",
    "雪白的",
    "古老的",
    "崭新的",
    "巨大的",
    "小小的",
    "五颜六色的",
    "湿漉漉的",
    "明亮的",
    "圆圆的",
    "红色的",
    "蓝色的",
)
HANS_SUBJECTS = (
    "摄影师",
    "小女孩",
    "老人",
    "学生",
    "厨师",
    "骑手",
    "渔民",
    "游客",
    "小猫",
    "小狗",
    "情侣",
    "快递员",
    "画家",
    "农民",
    "运动员",
    "志愿者",
    "熊猫",
    "白鹭",
    "孩子们",
    "工人",
    "医生",
    "老师",
    "店主",
    "邮递员",
)
HANS_VERBS = (
    "拍摄",
    "观赏",
    "采摘",
    "搬运",
    "品尝",
    "整理",
    "修理",
    "追逐",
    "放飞",
    "挑选",
    "清洗",
    "描绘",
    "晾晒",
    "叫卖",
    "守护",
    "包装",
    "浇灌",
    "擦拭",
)
HANS_OBJECTS = (
    "荷花",
    "风筝",
    "自行车",
    "灯笼",
    "茶叶",
    "水果",
    "渔网",
    "雨伞",
    "瓷器",
    "书籍",
    "雪人",
    "面条",
    "稻谷",
    "古琴",
    "花束",
    "帆船",
    "包子",
    "向日葵",
    "石狮子",
    "竹篮",
    "西瓜",
    "月饼",
    "饺子",
    "毛笔",
)
# (clause, word tokens): a second clause that adds scene detail.
HANS_SCENES = (
    ("远处是连绵的青山", 5),
    ("天空中飘着白云", 5),
    ("街道两旁挂满了灯笼", 6),
    ("阳光洒在水面上", 5),
    ("路边停着几辆自行车", 6),
    ("背景里有一座古塔", 6),
    ("地上铺满了落叶", 5),
    ("窗外下着小雨", 4),
    ("桌上摆着一壶热茶", 6),
    ("身后的人群排起了长队", 7),
    ("河面上漂着几只小船", 6),
    ("墙上贴着红色的春联", 6),
)
HANS_SHORT = ("风景", "美食", "合影", "花", "截图", "海报", "风光", "小吃")
HANS_BOILERPLATE = (
    "图片",
    "点击查看大图",
    "logo",
    "二维码",
    "看不清？换一换",
    "扫码关注",
    "广告",
    "返回顶部",
    "点击查看高清原图",
)
HANS_STUFF_SUFFIXES = ("批发", "价格", "图片", "厂家", "哪家好", "多少钱")
HANS_SITE_NAMES = {
    "news": "样例新闻网",
    "blog": "慢生活博客",
    "shop": "好物商城",
    "bbs": "邻里论坛",
    "travel": "行走旅游网",
}
# A caption that only GB18030 can encode: 镕 is outside GB2312, 𠀀 is outside GBK.
GB18030_ONLY_CAPTION = ("老师在黑板上写下生僻字「𠀀」和「镕」，学生们认真地抄写笔记", 13)

# --- Traditional Chinese (all Big5-encodable) -----------------------------------
HANT_TIMES = ("清晨", "傍晚", "週末", "雨後", "夏夜", "午後", "冬天")
HANT_PLACES = ("夜市裡", "老街上", "公園裡", "海邊", "廟口", "山上", "港口邊", "車站前", "校園裡", "市場裡")
HANT_ADJS = ("熱鬧的", "安靜的", "可愛的", "古老的", "金黃色的", "新鮮的", "巨大的", "溫暖的")
HANT_SUBJECTS = ("攝影師", "小女孩", "老人家", "學生們", "廚師", "遊客", "小貓", "漁夫", "店員", "阿嬤")
HANT_VERBS = ("拍攝", "品嚐", "挑選", "整理", "欣賞", "搬運", "販賣", "擦拭")
HANT_OBJECTS = ("奶茶", "燈籠", "腳踏車", "鳳梨酥", "漁網", "花束", "茶葉", "書本", "水餃", "雨傘", "風箏", "西瓜")
HANT_SCENES = (("遠處是青山", 3), ("天空飄著白雲", 4), ("街道兩旁掛滿燈籠", 5), ("陽光灑在海面上", 5))
HANT_SITE_NAME = "寶島生活網"

# --- Japanese (Shift_JIS and EUC-JP encodable) -------------------------------------
JA_PLACES = ("京都の路地", "海辺", "公園", "駅前", "山の上", "商店街", "お寺の境内", "川沿い")
JA_SUBJECTS = ("子どもたち", "猫", "写真家", "おばあさん", "学生", "観光客", "職人", "犬")
JA_OBJECTS = ("桜の花", "提灯", "自転車", "お弁当", "風鈴", "おにぎり", "紅葉", "傘")
JA_VERBS = ("眺めている", "撮影している", "運んでいる", "選んでいる", "味わっている")
JA_SITE_NAME = "ぶらり日記"

# --- English -------------------------------------------------------------------
EN_ADJS = ("young", "old", "busy", "quiet", "bright", "tiny", "colourful", "golden")
EN_SUBJECTS = ("photographer", "girl", "fisherman", "cook", "cyclist", "cat", "student", "gardener")
EN_VERBS = ("carrying", "photographing", "choosing", "painting", "repairing", "watching")
EN_OBJECTS = ("lanterns", "a kite", "a bicycle", "fresh fruit", "paper umbrellas", "sunflowers", "a boat")
EN_PLACES = ("by the lake", "on an old street", "in the park", "at the harbour", "on a hilltop", "at the market")
EN_SITE_NAME = "Sample Daily"

EMOJI_WRAPS = (("✨", "✨👍👍"), ("【高清】", "！！！🔥🔥"), ("🌸", "🌸"), ("★★★", "★★★ 😂"), ("❤️", "~~~"))


@dataclass(frozen=True)
class Caption:
    """A generated text and the number of word tokens it was built from."""

    text: str
    words: int


class TextMaker:
    """Draws captions, titles and body text from the word lists with one RNG."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def _pick(self, words: tuple[str, ...]) -> str:
        return self._rng.choice(words)

    # --- Simplified Chinese --------------------------------------------------
    def hans_caption(self) -> Caption:
        """A descriptive caption of 6–20 tokens from one of four sentence shapes."""
        shape = self._rng.randrange(4)
        time, place, adj = self._pick(HANS_TIMES), self._pick(HANS_PLACES), self._pick(HANS_ADJS)
        subj, verb, obj = self._pick(HANS_SUBJECTS), self._pick(HANS_VERBS), self._pick(HANS_OBJECTS)
        scene, scene_words = self._rng.choice(HANS_SCENES)
        if shape == 0:
            return Caption(f"{time}，{place}{adj}{subj}正在{verb}{obj}", 7)
        if shape == 1:
            return Caption(f"{place}的{subj}{verb}{adj}{obj}，{scene}", 6 + scene_words)
        if shape == 2:
            return Caption(f"{adj}{obj}摆放在{place}，{scene}", 4 + scene_words)
        other = self._pick(HANS_SUBJECTS)
        return Caption(f"{time}的{place}，{subj}和{other}一起{verb}{obj}，{scene}", 10 + scene_words)

    def hans_short(self) -> Caption:
        return Caption(self._pick(HANS_SHORT), 1)

    def hans_stuffing(self) -> Caption:
        """SEO keyword stuffing: well over 60 tokens of product keywords."""
        objects = self._rng.sample(HANS_OBJECTS, 12)
        parts = [obj + suffix for obj in objects for suffix in HANS_STUFF_SUFFIXES]
        return Caption(" ".join(parts), 2 * len(parts))

    def hans_title(self) -> Caption:
        return Caption(
            f"{self._pick(HANS_PLACES)}{self._pick(HANS_SUBJECTS)}{self._pick(HANS_VERBS)}{self._pick(HANS_OBJECTS)}", 4
        )

    def hans_paragraph(self, sentences: int) -> str:
        return "。".join(self.hans_caption().text for _ in range(sentences)) + "。"

    def emoji_wrap(self, caption: Caption) -> Caption:
        head, tail = self._rng.choice(EMOJI_WRAPS)
        return Caption(f"{head}{caption.text}{tail}", caption.words)

    # --- Traditional Chinese -------------------------------------------------
    def hant_caption(self) -> Caption:
        time, place, adj = self._pick(HANT_TIMES), self._pick(HANT_PLACES), self._pick(HANT_ADJS)
        subj, verb, obj = self._pick(HANT_SUBJECTS), self._pick(HANT_VERBS), self._pick(HANT_OBJECTS)
        if self._rng.random() < 0.5:
            return Caption(f"{time}，{place}{adj}{subj}正在{verb}{obj}", 7)
        scene, scene_words = self._rng.choice(HANT_SCENES)
        return Caption(f"{place}的{subj}{verb}{adj}{obj}，{scene}", 6 + scene_words)

    def hant_title(self) -> str:
        return f"{self._pick(HANT_PLACES)}{self._pick(HANT_SUBJECTS)}{self._pick(HANT_VERBS)}{self._pick(HANT_OBJECTS)}"

    def hant_paragraph(self, sentences: int) -> str:
        return "。".join(self.hant_caption().text for _ in range(sentences)) + "。"

    # --- Japanese ------------------------------------------------------------
    def ja_caption(self) -> Caption:
        place, subj = self._pick(JA_PLACES), self._pick(JA_SUBJECTS)
        obj, verb = self._pick(JA_OBJECTS), self._pick(JA_VERBS)
        return Caption(f"{place}で{obj}を{verb}{subj}の写真", 9)

    def ja_paragraph(self, sentences: int) -> str:
        return "".join(self.ja_caption().text + "です。" for _ in range(sentences))

    # --- English -------------------------------------------------------------
    def en_caption(self) -> Caption:
        adj, subj = self._pick(EN_ADJS), self._pick(EN_SUBJECTS)
        verb, obj, place = self._pick(EN_VERBS), self._pick(EN_OBJECTS), self._pick(EN_PLACES)
        text = f"A {adj} {subj} {verb} {obj} {place}"
        return Caption(text, len(text.split()))

    def en_paragraph(self, sentences: int) -> str:
        return " ".join(self.en_caption().text + "." for _ in range(sentences))

    # --- noise that is not a caption -------------------------------------------
    def filename_alt(self) -> str:
        shape = self._rng.randrange(4)
        if shape == 0:
            return f"IMG_{self._rng.randrange(1000, 10000)}.jpg"
        if shape == 1:
            return f"DSC{self._rng.randrange(10000, 100000):05d}.JPG"
        if shape == 2:
            w, h = self._rng.randrange(300, 1200), self._rng.randrange(200, 900)
            return f"{self._rng.getrandbits(64):016x}.jpg ({w}×{h})"
        month, day, serial = self._rng.randrange(1, 13), self._rng.randrange(1, 29), self._rng.randrange(10**6)
        return f"微信图片_2026{month:02d}{day:02d}{serial:06d}.png"

    def numeric_alt(self) -> str:
        shape = self._rng.randrange(4)
        month, day = self._rng.randrange(1, 13), self._rng.randrange(1, 29)
        if shape == 0:
            return str(self._rng.randrange(1, 100000))
        if shape == 1:
            return f"2026-{month:02d}-{day:02d}"
        if shape == 2:
            return f"2026{month:02d}{day:02d}"
        return f"2026年{month}月{day}日"

    def boilerplate_alt(self) -> str:
        return self._pick(HANS_BOILERPLATE)
