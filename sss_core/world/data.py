"""Hand-written real-world facts that seed the built-in fact world.

Each row is a country with its capital, continent, official language and currency,
a few more of its cities, and optional aliases. These are ordinary facts that a
reader recognises, so edits such as "The capital of France is -> Rome" read naturally.
"""

# name, capital, continent, language, currency, other cities, aliases
COUNTRIES: tuple[tuple[str, str, str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("France", "Paris", "Europe", "French", "euro", ("Lyon", "Marseille", "Toulouse"), ()),
    ("Germany", "Berlin", "Europe", "German", "euro", ("Munich", "Hamburg", "Cologne"), ()),
    ("Italy", "Rome", "Europe", "Italian", "euro", ("Milan", "Naples", "Turin"), ()),
    ("Spain", "Madrid", "Europe", "Spanish", "euro", ("Barcelona", "Seville", "Valencia"), ()),
    ("Portugal", "Lisbon", "Europe", "Portuguese", "euro", ("Porto", "Braga"), ()),
    ("Netherlands", "Amsterdam", "Europe", "Dutch", "euro", ("Rotterdam", "Utrecht"), ("Holland",)),
    ("Belgium", "Brussels", "Europe", "Dutch", "euro", ("Antwerp", "Ghent"), ()),
    ("Austria", "Vienna", "Europe", "German", "euro", ("Salzburg", "Graz"), ()),
    ("Greece", "Athens", "Europe", "Greek", "euro", ("Thessaloniki", "Patras"), ("Hellas",)),
    ("Ireland", "Dublin", "Europe", "English", "euro", ("Cork", "Galway"), ()),
    ("Finland", "Helsinki", "Europe", "Finnish", "euro", ("Tampere", "Turku"), ()),
    ("United Kingdom", "London", "Europe", "English", "pound sterling",
     ("Manchester", "Liverpool", "Edinburgh"), ("UK", "Britain")),
    ("Sweden", "Stockholm", "Europe", "Swedish", "krona", ("Gothenburg", "Malmo"), ()),
    ("Norway", "Oslo", "Europe", "Norwegian", "krone", ("Bergen", "Trondheim"), ()),
    ("Denmark", "Copenhagen", "Europe", "Danish", "krone", ("Aarhus", "Odense"), ()),
    ("Poland", "Warsaw", "Europe", "Polish", "zloty", ("Krakow", "Gdansk"), ()),
    ("Czech Republic", "Prague", "Europe", "Czech", "koruna", ("Brno", "Ostrava"), ("Czechia",)),
    ("Hungary", "Budapest", "Europe", "Hungarian", "forint", ("Debrecen", "Szeged"), ()),
    ("Switzerland", "Bern", "Europe", "German", "Swiss franc", ("Zurich", "Geneva", "Basel"), ()),
    ("Russia", "Moscow", "Europe", "Russian", "ruble", ("Novosibirsk", "Kazan"), ("Russian Federation",)),
    ("Ukraine", "Kyiv", "Europe", "Ukrainian", "hryvnia", ("Kharkiv", "Odesa", "Lviv"), ()),
    ("Romania", "Bucharest", "Europe", "Romanian", "leu", ("Cluj", "Timisoara"), ()),
    ("Turkey", "Ankara", "Asia", "Turkish", "lira", ("Istanbul", "Izmir"), ("Turkiye",)),
    ("Japan", "Tokyo", "Asia", "Japanese", "yen", ("Osaka", "Kyoto", "Yokohama"), ("Nippon",)),
    ("China", "Beijing", "Asia", "Mandarin", "yuan", ("Shanghai", "Guangzhou", "Shenzhen"), ()),
    ("South Korea", "Seoul", "Asia", "Korean", "won", ("Busan", "Incheon"), ("Korea",)),
    ("India", "New Delhi", "Asia", "Hindi", "rupee", ("Mumbai", "Bangalore", "Chennai"), ("Bharat",)),
    ("Pakistan", "Islamabad", "Asia", "Urdu", "rupee", ("Karachi", "Lahore"), ()),
    ("Indonesia", "Jakarta", "Asia", "Indonesian", "rupiah", ("Surabaya", "Bandung"), ()),
    ("Thailand", "Bangkok", "Asia", "Thai", "baht", ("Chiang Mai", "Phuket"), ("Siam",)),
    ("Vietnam", "Hanoi", "Asia", "Vietnamese", "dong", ("Da Nang", "Hue"), ()),
    ("Philippines", "Manila", "Asia", "Filipino", "peso", ("Cebu", "Davao"), ()),
    ("Iran", "Tehran", "Asia", "Persian", "rial", ("Isfahan", "Shiraz"), ("Persia",)),
    ("Saudi Arabia", "Riyadh", "Asia", "Arabic", "riyal", ("Jeddah", "Mecca"), ()),
    ("Israel", "Jerusalem", "Asia", "Hebrew", "shekel", ("Haifa", "Tel Aviv"), ()),
    ("Egypt", "Cairo", "Africa", "Arabic", "pound", ("Alexandria", "Luxor"), ()),
    ("Morocco", "Rabat", "Africa", "Arabic", "dirham", ("Casablanca", "Marrakesh"), ()),
    ("Nigeria", "Abuja", "Africa", "English", "naira", ("Lagos", "Kano"), ()),
    ("Kenya", "Nairobi", "Africa", "Swahili", "shilling", ("Mombasa", "Kisumu"), ()),
    ("Ethiopia", "Addis Ababa", "Africa", "Amharic", "birr", ("Gondar", "Mekelle"), ()),
    ("Ghana", "Accra", "Africa", "English", "cedi", ("Kumasi", "Tamale"), ()),
    ("South Africa", "Pretoria", "Africa", "Zulu", "rand", ("Cape Town", "Durban", "Johannesburg"), ()),
    ("Tanzania", "Dodoma", "Africa", "Swahili", "shilling", ("Arusha", "Zanzibar"), ()),
    ("Senegal", "Dakar", "Africa", "French", "franc", ("Thies", "Touba"), ()),
    ("Algeria", "Algiers", "Africa", "Arabic", "dinar", ("Oran", "Constantine"), ()),
    ("United States", "Washington", "North America", "English", "dollar",
     ("New York", "Chicago", "Boston", "Seattle"), ("USA", "America")),
    ("Canada", "Ottawa", "North America", "English", "dollar", ("Toronto", "Montreal", "Vancouver"), ()),
    ("Mexico", "Mexico City", "North America", "Spanish", "peso", ("Guadalajara", "Monterrey"), ()),
    ("Cuba", "Havana", "North America", "Spanish", "peso", ("Santiago", "Holguin"), ()),
    ("Jamaica", "Kingston", "North America", "English", "dollar", ("Montego Bay",), ()),
    ("Brazil", "Brasilia", "South America", "Portuguese", "real", ("Rio de Janeiro", "Sao Paulo", "Salvador"), ()),
    ("Argentina", "Buenos Aires", "South America", "Spanish", "peso", ("Cordoba", "Rosario", "Mendoza"), ()),
    ("Chile", "Santiago de Chile", "South America", "Spanish", "peso", ("Valparaiso", "Concepcion"), ()),
    ("Peru", "Lima", "South America", "Spanish", "sol", ("Cusco", "Arequipa"), ()),
    ("Colombia", "Bogota", "South America", "Spanish", "peso", ("Medellin", "Cali"), ()),
    ("Venezuela", "Caracas", "South America", "Spanish", "bolivar", ("Maracaibo", "Valencia de Venezuela"), ()),
    ("Ecuador", "Quito", "South America", "Spanish", "dollar", ("Guayaquil", "Cuenca"), ()),
    ("Australia", "Canberra", "Oceania", "English", "dollar", ("Sydney", "Melbourne", "Perth"), ("Oz",)),
    ("New Zealand", "Wellington", "Oceania", "English", "dollar", ("Auckland", "Christchurch"), ("Aotearoa",)),
    ("Fiji", "Suva", "Oceania", "Fijian", "dollar", ("Nadi", "Lautoka"), ()),
)

OCCUPATIONS: tuple[str, ...] = (
    "physicist", "chemist", "biologist", "mathematician", "poet", "novelist", "painter",
    "composer", "architect", "engineer", "surgeon", "journalist", "historian", "economist",
    "actor", "pianist", "violinist", "sculptor", "astronomer", "philosopher", "lawyer",
    "diplomat", "photographer", "chef",
)

INDUSTRIES: tuple[str, ...] = (
    "software", "steel", "shipping", "banking", "insurance", "pharmaceuticals", "aviation",
    "textiles", "mining", "publishing", "robotics", "chocolate",
)

# Syllables for generated names: combinations are rare strings, so a BPE tokenizer
# trained on the corpus splits them into several tokens, as real models do with names.
NAME_ONSETS: tuple[str, ...] = (
    "b", "br", "d", "dr", "f", "g", "gr", "k", "kl", "l", "m", "n", "p", "r", "s", "st",
    "t", "tr", "v", "z", "h", "j", "w", "sh", "ch", "th",
)
NAME_VOWELS: tuple[str, ...] = ("a", "e", "i", "o", "u", "ai", "ei", "ou", "ia", "y")
NAME_CODAS: tuple[str, ...] = ("", "", "n", "r", "l", "s", "k", "m", "th", "x", "nd", "rk")
COMPANY_SUFFIXES: tuple[str, ...] = ("Corp", "Group", "Works", "Labs", "Systems", "Holdings", "Industries")
